"""E-mail to owners: one RFC 5322 message, ``multipart/alternative`` (text/plain, then
text/html with the same facts), rendered once when the message is written and stored, so
that every attempt sends the same bytes and the same ``Message-ID``.

The data it renders is prepared by ``app.outbound.mail`` (times already written in the
owner's zone, links already issued): rendering is a pure function of it. Every header value
goes through the ``email`` library from data, and control characters in names and actions
become spaces first, so that a CR/LF in a name or an action can add no header or line.
"""

import re
from collections.abc import Sequence
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import Parser
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.models.outbound import EventType, MessageChannel

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent.parent / "templates" / "email"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
# The secret part of an action or unsubscribe link: never shown once the e-mail is written.
_LINK_TOKEN = re.compile(r"(/[au]/)[A-Za-z0-9_-]{20,}")
REDACTED = "[token hidden]"
# RFC 5322's hard limit, not its 78-character advice: a folded List-Unsubscribe (its URL is
# longer than 78) starts its value on a line of its own, which some readers keep as a space.
_POLICY = policy.SMTP.clone(max_line_length=998)


def one_line(value: str) -> str:
    """``value`` with every control character (CR, LF, tab…) turned into one space."""
    return _CONTROL.sub(" ", value).strip()


def clean(data: Any) -> Any:
    """Every string in ``data`` on one line (names, actions, candidates, times)."""
    if isinstance(data, str):
        return one_line(data)
    if isinstance(data, list):
        return [clean(item) for item in data]
    if isinstance(data, dict):
        return {key: clean(value) for key, value in data.items()}
    return data


def render(data: dict[str, Any], now: datetime) -> str:
    """The whole e-mail as text (CRLF line ends, ASCII: non-ASCII parts are quoted-printable
    or encoded words). ``data``: ``message_id``, ``host``, ``from``, ``to`` (``name``,
    ``address``), ``subject``, ``unsubscribe_url``, ``template`` and what it shows."""
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
    text = _TEMPLATES.get_template(f"{template}.txt").render(**data)
    html = _TEMPLATES.get_template(f"{template}.html").render(**data)
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message.as_string()


def envelope(body: str) -> tuple[str, list[str]]:
    """The envelope sender and recipients of a stored e-mail: its From and To addresses."""
    headers = Parser(policy=policy.SMTP).parsestr(body, headersonly=True)
    sender = parseaddr(str(headers["From"]))[1]
    recipients = [parseaddr(str(headers["To"]))[1]]
    return sender, recipients


def summary(body: str) -> dict[str, Any]:
    """What the API shows of a stored e-mail: its headers and text part, with the tokens of
    its links hidden (they open the owner's steps and are never shown after sending)."""
    message = Parser(policy=policy.default).parsestr(body)
    headers = {
        name: _LINK_TOKEN.sub(rf"\1{REDACTED}", str(message[name]))
        for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe")
        if message[name] is not None
    }
    part = message.get_body(preferencelist=("plain",))
    text = part.get_content() if isinstance(part, EmailMessage) else ""
    return {"headers": headers, "text": _LINK_TOKEN.sub(rf"\1{REDACTED}", text)}


class _Email:
    """The e-mail channel in the registry: what a message's body is, and no headers of an
    HTTP attempt (it is sent by SMTP: app/outbound/mailer.py)."""

    kind = MessageChannel.email.value
    signed = False

    def body(self, type_: EventType, data: dict[str, Any], now: datetime) -> str:
        return render(data, now)

    def headers(
        self, message_id: str, body: str, secrets: Sequence[str], at: datetime
    ) -> dict[str, str]:
        return {}


EMAIL = _Email()
