"""How `nextstep serve` runs: one process, or a supervisor and worker processes whose
metrics add up.

With several workers, a scrape of ``/metrics`` lands on one of them at random. Each worker
therefore writes its counters and histograms to files in one directory (prometheus-client's
multiprocess mode, see observability.Metrics), and whichever answers the scrape adds them
all up. The directory is made before the workers start (the mode is chosen when a worker
first imports prometheus-client) and emptied at start and at exit, so that a restarted
server does not count its predecessor's requests.
"""

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from socket import socket

import uvicorn
from prometheus_client.multiprocess import mark_process_dead
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from app.observability import MULTIPROCESS_DIR

APP = "app.main:create_app"


def _remove_metric_files(path: str) -> None:
    for name in glob.glob(os.path.join(path, "*.db")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """``PROMETHEUS_MULTIPROC_DIR`` for the workers: the one given, emptied, or a new
    temporary one; emptied (or removed, if made here) at exit."""
    given = os.environ.get(MULTIPROCESS_DIR)
    path = given or tempfile.mkdtemp(prefix="nextstep-metrics-")
    os.makedirs(path, exist_ok=True)
    _remove_metric_files(path)
    os.environ[MULTIPROCESS_DIR] = path
    try:
        yield path
    finally:
        if given:
            _remove_metric_files(path)
        else:
            os.environ.pop(MULTIPROCESS_DIR, None)
            shutil.rmtree(path, ignore_errors=True)


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, which also tells the metrics when a worker is gone.

    A dead worker's counters stay in the sum (a total that fell back would read as a
    reset); ``mark_process_dead`` drops only what describes a live process.
    """

    def __init__(self, config: uvicorn.Config, sockets: list[socket], metrics_dir: str) -> None:
        super().__init__(config, sockets)
        self.metrics_dir = metrics_dir

    def _pids(self) -> set[int]:
        return {p.pid for p in self.processes if p.pid is not None}

    def _forget(self, before: set[int]) -> None:
        for pid in before - self._pids():
            mark_process_dead(pid, self.metrics_dir)  # type: ignore[no-untyped-call]

    def keep_subprocess_alive(self) -> None:
        before = self._pids()
        super().keep_subprocess_alive()
        self._forget(before)

    def handle_signals(self) -> None:
        before = self._pids()
        super().handle_signals()
        self._forget(before)


def _config(host: str, port: int, workers: int) -> uvicorn.Config:
    return uvicorn.Config(
        APP,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )


def _serve_alone(config: uvicorn.Config) -> None:
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


def serve(host: str, port: int, workers: int) -> None:
    """Serve the API on ``host:port`` with ``workers`` processes until stopped."""
    if workers == 1 and not os.environ.get(MULTIPROCESS_DIR):
        _serve_alone(_config(host, port, workers))
        return
    with shared_metrics_dir() as path:
        if workers == 1:  # a directory was given: emptied first all the same
            _serve_alone(_config(host, port, workers))
            return
        config = _config(host, port, workers)
        with contextlib.suppress(KeyboardInterrupt):
            _Supervisor(config, [config.bind_socket()], path).run()
