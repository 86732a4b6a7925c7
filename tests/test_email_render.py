"""The rendered e-mail is, byte for byte, what the ``email`` library writes for the same data
when it builds the whole ``EmailMessage`` (``set_content``, ``add_alternative``,
``as_string``), whatever the names, actions and subjects hold: non-ASCII, encoded-word look-
alikes, line breaks, lines long enough to fold or to be broken by quoted-printable."""

import re
import uuid
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.outbound.channels.email import _POLICY, _TEMPLATES, clean, render

NOW = datetime(2026, 12, 8, 14, 30, tzinfo=UTC)
_BOUNDARY = re.compile(r'boundary="([^"]+)"')
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=120)


def library_render(data: dict[str, Any], now: datetime) -> str:
    """The e-mail as one ``EmailMessage`` built and written by the library."""
    data = clean(data)
    message = EmailMessage(policy=_POLICY)
    message["From"] = data["from"]
    to = data["to"]
    message["To"] = Address(display_name=to["name"] or "", addr_spec=to["address"])
    message["Subject"] = data["subject"]
    message["Date"] = format_datetime(now)
    message["Message-ID"] = f"<{data['message_id']}@{data['host']}>"
    message["Auto-Submitted"] = "auto-generated"
    message["List-Unsubscribe"] = f"<{data['unsubscribe_url']}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    template = data["template"]
    message.set_content(
        _TEMPLATES.get_template(f"{template}.txt").render(**data), cte="quoted-printable"
    )
    message.add_alternative(
        _TEMPLATES.get_template(f"{template}.html").render(**data),
        subtype="html",
        cte="quoted-printable",
    )
    return message.as_string()


def one_boundary(body: str) -> str:
    [boundary] = set(_BOUNDARY.findall(body))
    assert f"--{boundary}--\r\n" in body
    return body.replace(boundary, "BOUNDARY")


def reminder(name: str, action: str, candidate: str, template: str = "reminder") -> dict[str, Any]:
    step = {
        "action": action,
        "candidate": candidate,
        "job": "Engineer",
        "due": "Mon 7 Dec 2026, 17:00 EST",
        "late": "2 hours",
        "waiting": "3 days",
        "unanswered": 1,
        "owner": None,
        "link": "https://nextstep.example.com/a/" + "x" * 43,
    }
    return {
        "template": template,
        "message_id": str(uuid.uuid4()),
        "host": "nextstep.example.com",
        "from": "nextstep <nextstep@example.com>",
        "to": {"name": name, "address": "hana@example.com"},
        "subject": f"Overdue: {action} — {candidate}",
        "greeting": f"Hello {name},",
        "intro": "A step you owe is overdue.",
        "sections": [{"title": "Overdue", "steps": [step, step]}],
        "zone": "America/New_York",
        "topic": "reminder e-mails",
        "footer": "Sent by nextstep.",
        "unsubscribe_url": "https://nextstep.example.com/u/" + "y" * 43,
    }


@settings(max_examples=150, deadline=None)
@given(_TEXT, _TEXT, _TEXT)
@example("Hana Manager", "Tell the candidate the decision", "Ada Candidate")
@example('Zoë "the boss" O\'Brien, Jr.', "Call back =?utf-8?q?x?=", "Łukasz Ğ 😀")
@example("Harriet\r\nBcc: eve@evil.test", "Call\r\n\r\n<b>fake</b>", "Casey\nX-Injected: yes")
@example("N" * 200, "A " * 300, "é" * 400)
@example("", ".", "From the top")
def test_the_bytes_are_the_librarys_for_any_name_action_and_candidate(
    name: str, action: str, candidate: str
) -> None:
    data = reminder(name, action, candidate)
    assert one_boundary(render(data, NOW)) == one_boundary(library_render(data, NOW))


def test_every_template_renders_as_the_library_would() -> None:
    for template in ("reminder", "digest", "test"):
        data = reminder("Hana Manager", "Send the offer", "Ada Candidate", template=template)
        assert one_boundary(render(data, NOW)) == one_boundary(library_render(data, NOW))


def test_the_boundary_is_new_for_every_email_and_the_parts_parse() -> None:
    data = reminder("Hana Manager", "Send the offer", "Ada Candidate")
    first, second = render(data, NOW), render(data, NOW)
    assert _BOUNDARY.findall(first) != _BOUNDARY.findall(second)
    parsed = BytesParser(policy=policy.default).parsebytes(first.encode("ascii"))
    assert isinstance(parsed, EmailMessage)
    assert not parsed.defects
    assert [part.get_content_type() for part in parsed.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
