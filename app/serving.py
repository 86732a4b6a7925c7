"""How `nextstep serve` runs: one process, or a supervisor and worker processes whose
metrics add up; and beside them, one outbound worker process (`nextstep worker`).

The outbound worker runs in a process of its own, at a lower scheduling priority, rather
than inside each server process: sending competed with the API for the same interpreter
and cores, and ingestion with an endpoint subscribed to every change ran at about a third
of its speed without one (bench/RESULTS.md, "Outbound"). Its metrics are written to files
that the servers' /metrics reads. It is stopped with the server, and dies with it if the
server is killed (Linux).

With several workers, a scrape of ``/metrics`` lands on one of them at random. Each worker
therefore writes its counters and histograms to files in one directory (prometheus-client's
multiprocess mode, see observability.Metrics), and whichever answers the scrape adds them
all up. The directory is made before the workers start (the mode is chosen when a worker
first imports prometheus-client) and emptied at start and at exit, so that a restarted
server does not count its predecessor's requests.
"""

import contextlib
import ctypes
import glob
import importlib
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from socket import socket

import uvicorn
from prometheus_client.multiprocess import mark_process_dead
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from app.config import get_settings
from app.observability import MULTIPROCESS_DIR, SENDER_METRICS_DIR

APP = "app.main:create_app"
log = logging.getLogger("nextstep.serving")
_PR_SET_PDEATHSIG = 1


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
    # Once shut down, uvicorn raises the signal that stopped it again, for its previous
    # handler: by default a SIGTERM would then end the process before the blocks around this
    # one ran (the worker beside it stopped and waited for, its metrics directory removed).
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _stop_with_parent() -> None:  # in the child, before exec
    with contextlib.suppress(OSError, AttributeError):
        # Stopped with the server, even one killed by SIGKILL: no sender left alone.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# The pipe on which the worker says it has loaded (app/cli.py `worker`).
SENDER_READY_FD = "NEXTSTEP_SENDER_READY_FD"
SENDER_READY_SECONDS = 60.0
# After a worker exits on its own, the next starts after this long, doubled while each
# lasts less than SENDER_STEADY_SECONDS, up to SENDER_RESTART_MAX_SECONDS.
SENDER_RESTART_SECONDS = 1.0
SENDER_RESTART_MAX_SECONDS = 60.0
SENDER_STEADY_SECONDS = 60.0


class _SenderProcess:
    """`nextstep worker` beside the servers, started again whenever it exits on its own (a
    crash, the kernel's OOM killer): the servers would otherwise go on answering while
    nothing sends. What it had in flight is sent again when its leases run out."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = env
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._process, self.ready = self._start()
        self._watcher = threading.Thread(target=self._watch, name="sender-watch", daemon=True)

    def _start(self) -> tuple["subprocess.Popen[bytes]", int]:
        ready, says_ready = os.pipe()
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "worker"],
            env={**self._env, SENDER_READY_FD: str(says_ready)},
            pass_fds=(says_ready,),
            preexec_fn=_stop_with_parent,
        )
        os.close(says_ready)
        return process, ready

    def watch(self) -> None:
        self._watcher.start()

    def _watch(self) -> None:
        delay = SENDER_RESTART_SECONDS
        while True:
            started = time.monotonic()
            code = self._process.wait()
            if self._stopping.wait(delay):
                return
            log.error("the outbound worker exited (%s); starting another", code)
            with self._lock:
                if self._stopping.is_set():
                    return
                self._process, ready = self._start()
            os.close(ready)  # nobody waits for a replacement to load
            lasted = time.monotonic() - started
            steady = lasted >= SENDER_STEADY_SECONDS
            delay = SENDER_RESTART_SECONDS if steady else min(2 * delay, SENDER_RESTART_MAX_SECONDS)

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            process = self._process
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def sender_apart(metrics_dir: str, serves_here: bool) -> Iterator[None]:
    """`nextstep worker` as a process of its own while the block runs, writing its metrics
    to ``metrics_dir``, and started again if it exits on its own; the server processes
    started in the block run no worker.

    The block starts once the worker has loaded, so that a server that answers /readyz has
    a worker sending beside it, as when it ran inside. A process that serves the block
    itself (``serves_here``; not a supervisor) loads the app meanwhile, so that the two
    loadings overlap (seconds each on a busy machine); the worker lowers its priority only
    once it has loaded (``say_sender_ready``)."""
    sender = _SenderProcess({**os.environ, MULTIPROCESS_DIR: metrics_dir})
    os.environ["NEXTSTEP_WORKER"] = "false"
    get_settings.cache_clear()
    try:
        if serves_here:
            importlib.import_module(APP.partition(":")[0])
        if not select.select([sender.ready], [], [], SENDER_READY_SECONDS)[0]:
            log.warning("the outbound worker has not started in %s s", SENDER_READY_SECONDS)
        os.close(sender.ready)
        sender.watch()
        yield
    finally:
        sender.stop()


def say_sender_ready() -> None:
    """In the worker `sender_apart` started: go below the servers (when both want a core,
    the API's requests come first and the messages go out in the gaps), and tell the server
    it has loaded."""
    fd = os.environ.pop(SENDER_READY_FD, None)
    if fd is not None:
        os.nice(get_settings().worker_niceness)
        with contextlib.suppress(OSError):
            os.write(int(fd), b"1")
            os.close(int(fd))


@contextlib.contextmanager
def _sender_metrics_dir() -> Iterator[str]:
    """A directory of the sender's own metrics, beside one server process, which reads it."""
    path = tempfile.mkdtemp(prefix="nextstep-sender-metrics-")
    os.environ[SENDER_METRICS_DIR] = path
    try:
        yield path
    finally:
        os.environ.pop(SENDER_METRICS_DIR, None)
        shutil.rmtree(path, ignore_errors=True)


def serve(host: str, port: int, workers: int) -> None:
    """Serve the API on ``host:port`` with ``workers`` processes until stopped, and send the
    outbound messages from a process beside them (unless NEXTSTEP_WORKER is false)."""
    apart = get_settings().worker
    if workers == 1 and not os.environ.get(MULTIPROCESS_DIR):
        with contextlib.ExitStack() as stack:
            if apart:
                metrics_dir = stack.enter_context(_sender_metrics_dir())
                stack.enter_context(sender_apart(metrics_dir, serves_here=True))
            _serve_alone(_config(host, port, workers))
        return
    with (
        shared_metrics_dir() as path,
        sender_apart(path, serves_here=workers == 1) if apart else contextlib.nullcontext(),
    ):
        if workers == 1:  # a directory was given: emptied first all the same
            _serve_alone(_config(host, port, workers))
            return
        config = _config(host, port, workers)
        with contextlib.suppress(KeyboardInterrupt):
            _Supervisor(config, [config.bind_socket()], path).run()
