# The two front doors: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NEXTSTEP_PORT ?= 8000
export NEXTSTEP_PORT

.PHONY: run test install install-test lint typecheck hadolint openapi pytest \
        bench-overdue bench-ingest bench-floor bench-deadlines bench-report fuzz reliability soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

## Serve the API on SQLite at http://127.0.0.1:$(NEXTSTEP_PORT)
run: install
	mkdir -p var
	$(BIN)/nextstep migrate
	$(BIN)/nextstep serve --host 127.0.0.1 --port $(NEXTSTEP_PORT)

## Every check: lint, types, Dockerfile, OpenAPI drift, tests (SQLite, and PostgreSQL when configured)
test: install-test lint typecheck hadolint pytest

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-test
	$(BIN)/mypy app migrations tests bench

hadolint: install-test
	$(BIN)/hadolint Dockerfile

pytest: install-test
	$(BIN)/pytest -q -p no:cacheprovider -m "not slow"

## Write openapi/openapi.json from the code
openapi: install
	$(BIN)/python -m app.openapi > openapi/openapi.json

bench-overdue: install-test
	$(BIN)/python bench/overdue.py

bench-ingest: install-test
	$(BIN)/python bench/ingest.py

bench-floor: install-test
	$(BIN)/python bench/floor.py

bench-deadlines: install-test
	$(BIN)/python bench/deadlines.py

bench-report: install-test
	$(BIN)/python bench/report.py

fuzz: install-test
	NEXTSTEP_FUZZ_EXAMPLES=500 $(BIN)/pytest -q tests/test_fuzz.py

reliability: install-test
	$(BIN)/pytest -q -m slow

soak: install-test
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
