# The two front doors: `make run` and `make test`; `make check` is the quick loop between.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NEXTSTEP_PORT ?= 8000
export NEXTSTEP_PORT
# The tool that writes the lock files, pinned so that `make lock` gives the same answer everywhere.
UV_VERSION := 0.13.9
# Extra `uv pip compile` options, e.g. `make lock LOCK_ARGS=--upgrade` to move every pin to the newest.
LOCK_ARGS ?=
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet \
              --custom-compile-command "make lock" $(LOCK_ARGS)

.PHONY: run test check check-tests install install-test lock lint typecheck hadolint openapi openapi-lint pytest browser \
        bench-overdue bench-ingest bench-ingest-inprocess bench-ingest-policy bench-floor bench-deadlines bench-report bench-outbound bench-email bench-rule-schedule bench-tracing bench-feed fuzz reliability soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Dependencies come from the lock files at their exact versions; the package itself adds none.
$(VENV)/.installed: $(BIN)/python requirements.lock pyproject.toml
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# The runtime lock is a subset of the test lock (same versions), so this installs both.
$(VENV)/.installed-test: $(BIN)/python requirements-test.lock pyproject.toml
	$(BIN)/python -m pip install --quiet -r requirements-test.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

## Resolve pyproject.toml's dependencies into requirements-test.lock and requirements.lock
# The test lock is resolved first and constrains the runtime lock, so the tests run the very
# versions that ship (a test tool's upper bound may hold a runtime package back).
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml --extra test $(LOCK_FLAGS) -o requirements-test.lock
	$(BIN)/uv pip compile pyproject.toml -c requirements-test.lock $(LOCK_FLAGS) -o requirements.lock

## The browser tests' tools: Debian's chromium (installed with apt-get when run as root) and
## axe-core from package-lock.json. Under CI=true a missing browser fails the run.
CHROMIUM ?= /usr/bin/chromium

browser: node_modules/.installed
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	elif [ "$${CI:-}" = true ]; then \
		echo "$(CHROMIUM) is missing: install Debian's chromium (apt-get install chromium)" >&2; exit 1; \
	else \
		echo "$(CHROMIUM) is missing: the browser tests will be skipped (apt-get install chromium)" >&2; \
	fi


## Serve the API on SQLite at http://127.0.0.1:$(NEXTSTEP_PORT)
run: install
	mkdir -p var
	$(BIN)/nextstep migrate
	$(BIN)/nextstep serve --host 127.0.0.1 --port $(NEXTSTEP_PORT)

## Every check: lint (with the import layers), types, Dockerfile, OpenAPI lint and drift, tests (SQLite, and PostgreSQL when configured)
test: install-test lint typecheck hadolint openapi-lint pytest

# Tests run on one worker per core (pytest-xdist), each with databases of its own; the
# tests marked process, browser or timing run on one worker, one after the other.
PYTEST_WORKERS ?= auto
PYTEST := $(BIN)/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadgroup

## The loop after each change: lint, types, and the tests that need no real process, browser
## or PostgreSQL (SQLite only, the dev hypothesis profile), all at once
check: install-test
	@$(MAKE) --no-print-directory -j3 --output-sync=target lint typecheck check-tests

# Schemathesis over the whole document (minutes) is left to `make test`; the HTTP contract's
# other checks stay in the loop.
check-tests: install-test
	NEXTSTEP_TEST_DATABASES=sqlite NEXTSTEP_HYPOTHESIS_PROFILE=dev \
	$(PYTEST) -m "not slow and not process and not browser and not timing and not postgresql" \
	    -k "not conforms_to_the_openapi_document"

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: install-test
	$(BIN)/mypy app migrations tests bench

hadolint: install-test
	$(BIN)/hadolint Dockerfile

# Node.js tools at package-lock.json's versions; reinstalled when the lock changes.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## Lint openapi/openapi.json with Redocly CLI's recommended rules (redocly.yaml)
openapi-lint: node_modules/.installed
	REDOCLY_SUPPRESS_UPDATE_NOTICE=true npx --no-install redocly lint

pytest: install-test browser
	NEXTSTEP_HYPOTHESIS_PROFILE=$${NEXTSTEP_HYPOTHESIS_PROFILE:-ci} $(PYTEST) -m "not slow"

## Write openapi/openapi.json from the code
openapi: install
	$(BIN)/nextstep openapi > openapi/openapi.json

bench-overdue: install-test
	$(BIN)/python bench/overdue.py

bench-ingest: install-test
	$(BIN)/python bench/ingest.py

bench-ingest-inprocess: install-test
	$(BIN)/python bench/ingest_inprocess.py

bench-ingest-policy: install-test
	$(BIN)/python bench/ingest_policy.py

bench-floor: install-test
	$(BIN)/python bench/floor.py

bench-deadlines: install-test
	$(BIN)/python bench/deadlines.py

bench-report: install-test
	$(BIN)/python bench/report.py

bench-outbound: install-test
	$(BIN)/python bench/outbound.py

bench-email: install-test
	$(BIN)/python bench/email_outbox.py

bench-rule-schedule: install-test
	$(BIN)/python bench/rule_schedule.py

## Long fuzzing: schemathesis (every phase, stateful included) and the signature checks with
## the fuzz hypothesis profile, on each database
bench-tracing: install-test
	$(BIN)/python bench/tracing.py

bench-feed: install-test
	$(BIN)/python bench/feed.py

fuzz: install-test
	NEXTSTEP_HYPOTHESIS_PROFILE=fuzz NEXTSTEP_TEST_ONE_DATABASE=each $(PYTEST) tests/test_fuzz.py

reliability: install-test
	$(BIN)/pytest -q -m slow

soak: install-test
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) var node_modules .pytest_cache .mypy_cache .ruff_cache
