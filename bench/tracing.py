"""What tracing costs ingestion: the same load as bench/ingest.py against three servers, in
one run, alternated round by round.

- `before`: the code of a git revision before tracing existed (default: the merge base
  with main, else HEAD~), extracted to a temporary directory and served from there with
  this virtualenv: the code of today, without any of this.
- `off`: this tree, no OTEL_* variable: tracing is off (nothing of it is loaded).
- `on 10 %`: this tree, exporting OTLP/HTTP to a receiver in this process, with
  `OTEL_TRACES_SAMPLER=parentbased_traceidratio` and `OTEL_TRACES_SAMPLER_ARG=0.1`. Every
  request pays for its sampling decision and the instrumentation's wrappers; one in ten
  builds and exports its spans (the request, its SQL statements, the apply).

Each run gets a fresh database (a SQLite file; with `--databases postgresql` a fresh
PostgreSQL database), a warm-up, then the measured load; the stored deliveries are checked
as bench/ingest.py checks them. The order of the three rotates from one round to the next,
so that a change in what else the machine is doing falls on each in turn. It prints, per
server, the median and the spread (lowest to highest) over the rounds of requests/s and
of the server process's CPU time per request, and the ratios of the medians; then how many
spans and traces the receiver got from the traced runs.

    .venv/bin/python bench/tracing.py [--rounds N] [--events N] [--seconds S]
        [--databases sqlite,postgresql] [--before REV]

Targets: tracing on at 10 % costs at most 10 % (CPU per request and requests/s against
`off`); `off` costs nothing measurable against `before` (the difference within the spread).
"""

import argparse
import base64
import contextlib
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import ingest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.migrate import upgrade

ROOT = ingest.HERE.parent
SERVERS = ("before", "off", "on 10 %")
MAX_COST = 0.10


class SpanSink:
    """An OTLP/HTTP receiver on 127.0.0.1 that keeps what it is sent, decoded at the end."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                sink.bodies.append(body)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def counts(self) -> tuple[int, int]:
        """Spans and distinct traces received."""
        spans, traces = 0, set[bytes]()
        for body in self.bodies:
            for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
                for scope in resource.scope_spans:
                    spans += len(scope.spans)
                    traces.update(span.trace_id for span in scope.spans)
        return spans, len(traces)

    def __enter__(self) -> "SpanSink":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def tree_of(revision: str, workdir: Path) -> Iterator[Path]:
    """The app and migrations of ``revision``, extracted (git archive) into ``workdir``."""
    target = workdir / "before"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "app", "migrations", "alembic.ini"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    yield target


def default_before() -> str:
    for args in (["merge-base", "HEAD", "main"], ["rev-parse", "HEAD~"]):
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            return done.stdout.strip()
    raise RuntimeError("no revision to compare with: give --before")


@dataclass
class Runs:
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)

    def spread(self, values: list[float], form: str) -> str:
        return f"{statistics.median(values):{form}} [{min(values):{form}}-{max(values):{form}}]"


def run_once(
    name: str,
    url: str,
    env: dict[str, str],
    secret: str,
    plan: ingest.Plan,
    workdir: Path,
) -> tuple[ingest.Outcome, list[str]]:
    upgrade(url)
    port = ingest.free_port()
    command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = workdir / f"server-{name.replace(' ', '').replace('%', '')}.log"
    with ingest.running(command, {**env, "NEXTSTEP_DATABASE_URL": url}, port, "/readyz", log) as p:
        warmup, measured = ingest.measure(p, port, secret, plan, None)
    problems = ingest.check_stored(url, warmup, measured)
    if measured.non_2xx or warmup.non_2xx:
        problems.append(f"server log tail:\n{ingest.tail(log)}")
    return measured, problems


def environments(secret: str, before: Path, sink: SpanSink) -> dict[str, dict[str, str]]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("NEXTSTEP_", "OTEL_", "PYTHON"))
    }
    base.update(
        NEXTSTEP_WEBHOOK_SECRETS=f'{{"{ingest.SOURCE}": ["{secret}"]}}',
        NEXTSTEP_LOG_LEVEL="INFO",
        NEXTSTEP_WORKERS="1",
    )
    return {
        "before": {**base, "PYTHONPATH": str(before)},
        "off": base,
        "on 10 %": {
            **base,
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
            "OTEL_SERVICE_NAME": "nextstep-bench",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        },
    }


@contextlib.contextmanager
def fresh_database(label: str, workdir: Path, n: int, postgres_url: str) -> Iterator[str]:
    if label == "sqlite":
        yield f"sqlite:///{workdir / f'run-{n}.db'}"
    else:
        with ingest.postgresql_database(postgres_url) as url:
            yield url


def bench_database(
    label: str,
    plan: ingest.Plan,
    rounds: int,
    envs: dict[str, dict[str, str]],
    secret: str,
    postgres_url: str,
) -> list[str]:
    runs = {name: Runs() for name in SERVERS}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nextstep-bench-tracing-") as tmp:
        workdir = Path(tmp)
        n = 0
        for round_ in range(rounds):
            order = SERVERS[round_ % 3 :] + SERVERS[: round_ % 3]
            print(f"  round {round_ + 1}: {', '.join(order)}")
            for name in order:
                n += 1
                with fresh_database(label, workdir, n, postgres_url) as url:
                    measured, found = run_once(name, url, envs[name], secret, plan, workdir)
                runs[name].rps.append(measured.rps)
                runs[name].cpu_us.append(measured.cpu_per_request_us)
                problems += [f"{label} {name}: {p}" for p in found]
    print(f"  {'server':9} {'req/s median [spread]':>28} {'CPU us/req median [spread]':>30}")
    for name in SERVERS:
        r = runs[name]
        print(f"  {name:9} {r.spread(r.rps, '.0f'):>28} {r.spread(r.cpu_us, '.0f'):>30}")

    def ratio(a: str, b: str) -> tuple[float, float]:
        rps = statistics.median(runs[a].rps) / statistics.median(runs[b].rps)
        cpu = statistics.median(runs[a].cpu_us) / statistics.median(runs[b].cpu_us)
        return rps, cpu

    off_rps, off_cpu = ratio("off", "before")
    on_rps, on_cpu = ratio("on 10 %", "off")
    print(f"  off / before: req/s x{off_rps:.3f}, CPU per request x{off_cpu:.3f}")
    verdict = "meets" if on_cpu <= 1 + MAX_COST and on_rps >= 1 - MAX_COST else "MISSES"
    print(
        f"  on 10 % / off: req/s x{on_rps:.3f}, CPU per request x{on_cpu:.3f} "
        f"({verdict} the target of at most {MAX_COST:.0%})"
    )
    return problems


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=3000, help="events per measured run")
    parser.add_argument("--seconds", type=float, default=20.0, help="cap per measured run")
    parser.add_argument("--databases", default="sqlite")
    parser.add_argument("--before", help="the revision to compare with (default: merge base)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("NEXTSTEP_BENCH_POSTGRES_URL")
        or os.environ.get("NEXTSTEP_TEST_POSTGRES_URL")
        or ingest.DEFAULT_POSTGRES_URL,
    )
    args = parser.parse_args()
    plan = ingest.Plan(
        events=args.events, warmup=300, seconds=args.seconds, workers=1, profile_dir=None
    )
    signal.signal(signal.SIGTERM, _interrupt)  # so that the finally blocks run
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    revision = args.before or default_before()
    print(
        f"tracing: {plan.events} signed interview.completed events per run, "
        f"{ingest.CONCURRENCY} connections, 1 worker, {args.rounds} rounds; "
        f"before = {revision[:12]}"
    )
    failures: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="nextstep-bench-before-") as tmp,
        tree_of(revision, Path(tmp)) as before,
        SpanSink() as sink,
    ):
        envs = environments(secret, before, sink)
        for label in [d.strip() for d in args.databases.split(",") if d.strip()]:
            print(f"{label}:")
            try:
                failures += bench_database(
                    label, plan, args.rounds, envs, secret, args.postgres_url
                )
            except Exception as exc:
                failures.append(f"{label}: {type(exc).__name__}: {exc}")
        spans, traces = sink.counts()
        print(f"receiver: {spans} spans in {traces} traces from the traced runs")
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
