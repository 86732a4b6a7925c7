"""The README's curl recipes run as written against a live server."""

import contextlib
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
from tests.email_helpers import SmtpSink

README = Path(__file__).resolve().parents[1] / "README.md"

# The recipes run against a live server, as a reader would: on one database (the SQL under
# each recipe runs on both in the other tests).
pytestmark = [pytest.mark.process, pytest.mark.one_database("the README's commands as written")]


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
    with serving(database_url) as base:
        yield base


@contextlib.contextmanager
def serving(database_url: str, **extra: str) -> Iterator[str]:
    port = _free_port()
    # Printed links (status pages, calendar feeds) lead back to this server.
    env = {
        **os.environ,
        "NEXTSTEP_DATABASE_URL": database_url,
        "NEXTSTEP_PUBLIC_URL": f"http://127.0.0.1:{port}",
        **extra,
    }
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


@pytest.mark.one_database("the README's commands as written, against one live server")
def test_reminder_recipes_reach_the_readme_receiver(database_url: str, tmp_path: Path) -> None:
    """The section's curl recipes, with its receiver: the agreed step and its due-soon
    reminder arrive signed, verified and printed."""
    section = README.read_text().split("## Reminders and escalations", 1)[1].split("\n## ", 1)[0]
    register, rest = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    (receiver_code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    receiver_file = tmp_path / "receiver.py"
    receiver_file.write_text(receiver_code)
    key = make_key(Scope.admin, name="ops")
    receiver_port = str(_free_port())
    # The worker at the server's own priority: the recipe waits 3 s for its messages, on a
    # machine other tests keep busy.
    extra = {"NEXTSTEP_WORKER_NICENESS": "0", "NEXTSTEP_WORKER_POLL_SECONDS": "0.2"}
    with serving(database_url, NEXTSTEP_WORKER="true", **extra) as base:
        env = {**os.environ, "BASE": base, "KEY": key, "RECEIVER_PORT": receiver_port}
        made = subprocess.run(
            ["bash", "-c", f"set -euo pipefail\n{register}\necho $SECRET"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        secret = made.stdout.split()[-1]
        assert secret.startswith("whsec_")
        printed = tmp_path / "printed.txt"
        with printed.open("w") as out:
            receiver = subprocess.Popen(
                [sys.executable, str(receiver_file), secret, receiver_port],
                stdout=out,
                stderr=subprocess.DEVNULL,
            )
        try:
            result = subprocess.run(
                ["bash", "-c", "set -euo pipefail\n" + rest],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            assert "/problems/" not in result.stdout, result.stdout  # no problem document
            deadline = time.monotonic() + 20
            wanted = ("next_step.agreed Call Ada", "next_step.due_soon Call Ada")
            while time.monotonic() < deadline and not all(w in printed.read_text() for w in wanted):
                time.sleep(0.2)
        finally:
            receiver.terminate()
            receiver.wait(10)
    lines = printed.read_text().splitlines()
    # Messages are not ordered: the two may be sent in the same batch.
    assert sorted(line.split(" ", 1)[0] for line in lines) == [
        "next_step.agreed",
        "next_step.due_soon",
    ]
    assert all("Call Ada with the decision" in line for line in lines)
    assert '"status":"succeeded"' in result.stdout  # the message list the recipe shows


def test_owner_recipes_work_as_written(live_server: str) -> None:
    key = make_key(Scope.admin, name="ops")
    script = "set -euo pipefail\n" + recipes("Owners")
    result = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "BASE": live_server, "KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '"id":"hr-team"' in out
    assert '"email_reminders": false' in out
    assert '"version": 2' in out
    assert '"email": "hr@example.com"' in out  # the list, filtered
    assert "id,name,email,calendar_id,email_reminders,digest_enabled,digest_at" in out
    assert "hr-team,HR team,hr@example.com,,False,True,08:00,api" in out
    assert '[{"loc":["body","email"],' in out
    assert '{"from":"recruiter","fallback":{"id":"hr-team","name":"HR team","role":"hr"}}' in out


def test_calendar_feed_recipes_work_as_written(live_server: str) -> None:
    key = make_key(Scope.admin, name="ops")
    script = "set -euo pipefail\n" + recipes("Calendar feeds")
    result = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "BASE": live_server, "KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f'"url": "{live_server}/ics/' in out
    assert "BEGIN:VCALENDAR\nVERSION:2.0\n" in out
    assert "X-WR-CALNAME:Rita Recruiter" in out
    assert '"owner_id":"rita"' in out
    assert out.rstrip().endswith("204")


def test_email_recipes_reach_a_local_smtp_server(database_url: str) -> None:
    key = make_key(Scope.admin, name="ops")
    with (
        SmtpSink() as sink,
        serving(database_url, NEXTSTEP_SMTP_URL=sink.url(), NEXTSTEP_WORKER="true") as base,
    ):
        result = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + recipes("E-mail")],
            env={**os.environ, "BASE": base, "KEY": key},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        [mail] = sink.inbox
    assert '"message_id":' in result.stdout
    assert '{"type":"email.test","status":"succeeded","attempts":1}' in result.stdout
    assert mail["To"] == "Rita Recruiter <rita@example.com>"
    assert mail["Subject"] == "nextstep: test e-mail"
