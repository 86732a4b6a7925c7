"""`/metrics` of a real `nextstep serve --workers 4`: whichever worker a scrape lands on, it
shows every worker's requests added up, and the gauges read from the database once."""

import os
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app.migrate import upgrade
from tests.test_reliability import Server, running, service_env

REQUESTS = 60
READY = 'nextstep_http_requests_total{method="GET",route="/readyz",status="200"}'
READY_COUNT = 'nextstep_http_request_duration_seconds_count{method="GET",route="/readyz"}'


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    return tmp_path / "metrics"


@pytest.fixture
def server(tmp_path: Path, metrics_dir: Path) -> Iterator[Server]:
    url = f"sqlite:///{tmp_path}/nextstep.db"
    upgrade(url)
    env = service_env(
        url,
        NEXTSTEP_WORKERS="4",
        NEXTSTEP_WORKER="false",
        NEXTSTEP_PENDING_SWEEP_SECONDS="0",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    four = Server(env, tmp_path / "server.log")
    with running(four):
        yield four


def _send_readyz(url: str, count: int) -> None:
    # A connection each, from several threads: the kernel spreads them over the workers.
    def one(_n: int) -> int:
        return httpx.get(f"{url}/readyz", timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(count))) == {200}


def _send_until_spread(url: str, metrics_dir: Path) -> int:
    """Requests in batches until more than one worker has counted some (on a busy machine
    the first worker up may take every connection of a batch); how many were sent."""
    sent = 0
    deadline = time.monotonic() + 60
    while len(_workers_that_counted(metrics_dir)) < 2:
        assert time.monotonic() < deadline, "one worker took every request for 60 s"
        _send_readyz(url, REQUESTS)
        sent += REQUESTS
    return sent


def _value(text: str, series: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith(series + " ")]
    assert len(lines) == 1, f"{series}: {lines}"
    return float(lines[0].rsplit(" ", 1)[1])


def _workers_that_counted(metrics_dir: Path) -> set[str]:
    return {
        m.group(1) for p in metrics_dir.iterdir() if (m := re.match(r"counter_(\d+)\.db", p.name))
    }


def test_every_scrape_shows_the_requests_of_all_workers_until_the_server_stops(
    server: Server, metrics_dir: Path
) -> None:
    sent = _send_until_spread(server.url, metrics_dir)
    for _ in range(12):
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert _value(text, READY) == sent
        assert _value(text, READY_COUNT) == sent
        # Computed from the database by the worker scraped, once, not once per worker.
        assert len(re.findall(r"^nextstep_commitments_open ", text, re.MULTILINE)) == 1
        assert len(re.findall(r"^nextstep_outbound_pending_oldest_age_seconds ", text, re.M)) == 1
    server.stop()
    assert not list(metrics_dir.glob("*.db"))  # the next server starts from zero


def test_a_dead_workers_requests_still_count_after_it_is_replaced(
    server: Server, metrics_dir: Path
) -> None:
    sent = _send_until_spread(server.url, metrics_dir)
    victim = int(sorted(_workers_that_counted(metrics_dir))[0])
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(victim, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    _send_readyz(server.url, REQUESTS)
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert _value(text, READY) == sent + REQUESTS
