"""The README's curl recipes run as written against a live server."""

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.models import Scope
from tests.conftest import make_key

README = Path(__file__).resolve().parents[1] / "README.md"


def recipes(title: str = "Everyday tasks with curl") -> str:
    text = README.read_text()
    section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    return "\n".join(re.findall(r"```sh\n(.*?)```", section, flags=re.S))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live_server(database_url: str) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "NEXTSTEP_DATABASE_URL": database_url}
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(10)


def test_everyday_recipes_work_as_written(live_server: str) -> None:
    key = make_key(Scope.admin, name="ops")
    script = "set -euo pipefail\n" + recipes()
    result = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "BASE": live_server, "KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"type"' not in result.stdout, result.stdout  # no problem document anywhere
    assert "id,interview_id,source" in result.stdout  # the CSV header
    headers = {"Authorization": f"Bearer {key}"}
    (interview,) = httpx.get(f"{live_server}/v1/interviews", headers=headers).json()["items"]
    detail = httpx.get(f"{live_server}/v1/interviews/{interview['id']}", headers=headers).json()
    step, case_study = detail["commitments"]
    assert step["status"] == "done"
    assert step["owner"]["id"] == "rec-7"
    assert step["outcome"] == "Second interview booked for Friday"
    assert case_study["owed_by"] == "candidate"
    kinds = [
        e["kind"]
        for e in httpx.get(
            f"{live_server}/v1/interviews/{interview['id']}/timeline", headers=headers
        ).json()["items"]
    ]
    assert {"agreed", "reassigned", "contact", "completed"} <= set(kinds)


def test_deadline_policy_recipes_work_as_written(live_server: str) -> None:
    key = make_key(Scope.admin, name="ops")
    script = "set -euo pipefail\n" + recipes("Deadline policies and business time")
    result = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "BASE": live_server, "KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"type"' not in result.stdout, result.stdout  # no problem document anywhere
    assert '"due_at": "2026-11-30T22:00:00Z"' in result.stdout  # Thanksgiving and the closure
    assert '"basis":"policy"' in result.stdout
    assert '"due_at":"2026-11-25T22:00:00Z"' in result.stdout
    assert '"outcome": "Next step agreed: Call Dana with the decision"' in result.stdout
