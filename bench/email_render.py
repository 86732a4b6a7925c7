"""Rendering one reminder e-mail (app/outbound/channels/email.py ``render``): the whole RFC
5322 text of a ``multipart/alternative`` reminder of two steps, from prepared data.

Prints milliseconds per e-mail and e-mails/s over N renders (after a warm-up), each with a
new Message-ID and unsubscribe link as in a burst of reminders to one owner. Run it against
two versions of the code in one sitting to compare them (bench/RESULTS.md says how).

    .venv/bin/python bench/email_render.py [--emails N]
"""

import argparse
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from app.outbound.channels.email import render

STEP = {
    "action": "Tell the candidate the decision",
    "candidate": "Ada Candidate",
    "job": "Engineer",
    "due": "Mon 7 Dec 2026, 17:00 EST",
    "late": "2 hours",
    "waiting": "3 days",
    "unanswered": 1,
    "owner": None,
    "link": "https://nextstep.example.com/a/" + "x" * 43,
}


def reminder() -> dict[str, Any]:
    return {
        "template": "reminder",
        "message_id": str(uuid.uuid4()),
        "host": "nextstep.example.com",
        "from": "nextstep <nextstep@example.com>",
        "to": {"name": "Hana Manager", "address": "hana@example.com"},
        "subject": "Overdue: Tell the candidate the decision — Ada Candidate",
        "greeting": "Hello Hana Manager,",
        "intro": "A step you owe is overdue.",
        "sections": [{"title": "Overdue", "steps": [STEP, STEP]}],
        "zone": "America/New_York",
        "topic": "reminder e-mails",
        "footer": "Sent by nextstep.",
        "unsubscribe_url": f"https://nextstep.example.com/u/{uuid.uuid4().hex}",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--emails", type=int, default=5000)
    count = parser.parse_args().emails
    now = datetime.now(UTC)
    for _ in range(200):
        render(reminder(), now)
    data = [reminder() for _ in range(count)]
    started = time.perf_counter()
    for item in data:
        render(item, now)
    seconds = time.perf_counter() - started
    print(
        f"render: {count} e-mails in {seconds:.2f} s: {seconds / count * 1000:.3f} ms each "
        f"({count / seconds:.0f}/s)"
    )


if __name__ == "__main__":
    main()
