"""E-mail to owners: one RFC 5322 message, ``multipart/alternative`` (text/plain, then
text/html with the same facts), rendered once when the message is written and stored, so
that every attempt sends the same bytes and the same ``Message-ID``.

The data it renders is prepared by ``app.outbound.mail`` (times already written in the
owner's zone, links already issued): rendering is a pure function of it. Every header value
goes through the ``email`` library from data, and control characters in names and actions
become spaces first, so that a CR/LF in a name or an action can add no header or line.
"""

import random
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from email import policy, quoprimime
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import Parser
from email.utils import format_datetime, parseaddr
from functools import lru_cache
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
    auto_reload=False,  # compiled once: no stat of the template files for every e-mail
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
# The secret part of an action or unsubscribe link: never shown once the e-mail is written.
_LINK_TOKEN = re.compile(r"(/[au]/)[A-Za-z0-9_-]{20,}")
REDACTED = "[token hidden]"
# RFC 5322's hard limit, not its 78-character advice: a folded List-Unsubscribe (its URL is
# longer than 78) starts its value on a line of its own, which some readers keep as a space.
_MAX_LINE = 998
_POLICY = policy.SMTP.clone(max_line_length=_MAX_LINE)
_NEWLINE = re.compile(r"\r\n|\r|\n")  # what the generator writes as CRLF


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


def _header(name: str, value: Any) -> str:
    """One header line as the library writes it: parsed by its header registry from data (a
    CR/LF cannot add a line), folded by ``policy.SMTP`` (CRLF, encoded words)."""
    folded: str = _POLICY.fold(*_POLICY.header_store_parse(name, value))
    return folded


# Values that repeat from one e-mail to the next (the sender, an owner, the second it was
# written, a digest's subject) are folded once.
_repeated_header = lru_cache(maxsize=1024)(_header)


@lru_cache(maxsize=1024)
def _address(name: str, address: str) -> str:
    return _header("To", Address(display_name=name, addr_spec=address))


@lru_cache(maxsize=1)
def _shape() -> tuple[str, str, str]:
    """The pieces of a ``multipart/alternative`` e-mail of two quoted-printable parts that do
    not depend on its data, built once by the library: the multipart's own headers (with
    ``{boundary}`` for its boundary) and the headers of the text and of the HTML part."""
    message = EmailMessage(policy=_POLICY)
    message.set_content("-", cte="quoted-printable")
    message.add_alternative("-", subtype="html", cte="quoted-printable")
    message.set_boundary("{boundary}")

    def headers(part: EmailMessage) -> str:
        return "".join(_POLICY.fold(name, value) for name, value in part.raw_items())

    text, html = message.iter_parts()
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    return headers(message), headers(text), headers(html)


def _quoted_printable(text: str) -> str:
    """A text part's body as ``set_content(text, cte="quoted-printable")`` and the generator
    write it: UTF-8, lines ended by LF, the library's quoted-printable, then CRLF."""
    lines = b"\n".join(text.encode("utf-8").splitlines()) + b"\n"
    encoded = quoprimime.body_encode(lines.decode("latin-1"), _MAX_LINE)
    return _NEWLINE.sub("\r\n", encoded)


def _boundary(parts: Sequence[str]) -> str:
    """A random boundary in the generator's format that no part holds. (The generator's own
    check compiles a new regular expression for each boundary, a third of the cost of an
    e-mail; this one is stricter: ``--`` and the boundary anywhere, not only at a line start.
    A quoted-printable part cannot hold one anyway: its ``=`` are written ``=3D``.)"""
    while True:
        boundary = f"{'=' * 15}{random.randrange(sys.maxsize):019d}=="
        if not any(f"--{boundary}" in part for part in parts):
            return boundary


def render(data: dict[str, Any], now: datetime) -> str:
    """The whole e-mail as text (CRLF line ends, ASCII: non-ASCII parts are quoted-printable
    or encoded words). ``data``: ``message_id``, ``host``, ``from``, ``to`` (``name``,
    ``address``), ``subject``, ``unsubscribe_url``, ``template`` and what it shows.

    The bytes are those of an ``EmailMessage`` built with ``set_content`` and
    ``add_alternative`` and written with ``as_string`` (tests/test_email_render.py holds the
    two side by side), without building one for each e-mail: its headers are parsed and folded
    by the library one by one (repeated ones once), the parts' own headers come from one
    message built once, and the bodies are encoded by the library's quoted-printable."""
    data = clean(data)
    to = data["to"]
    template = data["template"]
    text = _quoted_printable(_TEMPLATES.get_template(f"{template}.txt").render(**data))
    html = _quoted_printable(_TEMPLATES.get_template(f"{template}.html").render(**data))
    multipart, text_headers, html_headers = _shape()
    parts = (text_headers + "\r\n" + text, html_headers + "\r\n" + html)
    boundary = _boundary(parts)
    return "".join(
        (
            _repeated_header("From", data["from"]),
            _address(to["name"] or "", to["address"]),
            _repeated_header("Subject", data["subject"]),
            _repeated_header("Date", format_datetime(now)),
            _header("Message-ID", f"<{data['message_id']}@{data['host']}>"),
            _repeated_header("Auto-Submitted", "auto-generated"),
            _header("List-Unsubscribe", f"<{data['unsubscribe_url']}>"),
            _repeated_header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            multipart.replace("{boundary}", boundary),
            "\r\n",
            f"--{boundary}\r\n",
            parts[0],
            f"\r\n--{boundary}\r\n",
            parts[1],
            f"\r\n--{boundary}--\r\n",
        )
    )


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
