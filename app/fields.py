"""The field types requests and responses are built from: instants (UTC with a Z out,
RFC 3339 with an offset in), durations, and text bounded and checked as the OpenAPI
document says."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    GetJsonSchemaHandler,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


def _utc_z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Every instant in a response is UTC with a Z. The serializer returns text, which alone would
# make the schema a bare string: the format is stated so that clients parse a datetime.
Instant = Annotated[
    datetime,
    PlainSerializer(_utc_z, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
# A length of time in a response: ISO 8601 text, e.g. P1DT2H (iso_duration writes it).
IsoDuration = Annotated[
    str, WithJsonSchema({"type": "string", "format": "duration", "examples": ["P1DT2H"]})
]

# The OpenAPI document must say exactly what the server accepts, so the patterns spell out
# whitespace (what str.isspace() and str.strip() mean) instead of `\s`, which JSON Schema
# validators, Rust and Python each read differently; lengths count the text as sent.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# PostgreSQL text cannot hold NUL, so no text the API takes may contain one (on SQLite either).
NUL_FREE = r"^[^\x00]*$"
NOT_BLANK = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"


@dataclass(frozen=True)
class _Documented:
    """Puts a pattern in the JSON Schema; the validator beside it enforces it, in words."""

    pattern: str

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["pattern"] = self.pattern
        return schema


def _nul_free(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _stripped(value: str) -> str:
    return _nul_free(value).strip()


def _not_blank(value: str) -> str:
    value = _stripped(value)
    if not value:
        raise ValueError("must not be blank")
    return value


NotBlank = (_Documented(NOT_BLANK), AfterValidator(_not_blank))
Text200 = Annotated[str, StringConstraints(min_length=1, max_length=200), *NotBlank]
Text300 = Annotated[
    str, StringConstraints(max_length=300), _Documented(NUL_FREE), AfterValidator(_stripped)
]
Action = Annotated[str, StringConstraints(min_length=1, max_length=500), *NotBlank]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=5000), *NotBlank]
CandidateNote = Annotated[str, StringConstraints(min_length=1, max_length=280), *NotBlank]
# Filters and path segments: any text, NUL aside.
NulFreeText = Annotated[str, _Documented(NUL_FREE), AfterValidator(_nul_free)]
LongText = Annotated[NulFreeText, StringConstraints(max_length=5000)]
Email = Annotated[
    str, StringConstraints(max_length=320, pattern=rf"^[^@\x00{_SPACE}]+@[^@\x00{_SPACE}]+$")
]

# Instants in requests are RFC 3339 text with an offset (`format: date-time`); pydantic alone
# would also take Unix numbers and other ISO 8601 spellings that the schema does not allow.
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
# RFC 3339 durations (`format: duration`), e.g. P1D, PT36H, P1W.
_DURATION = re.compile(
    r"^P(?:[0-9]+W|(?=[0-9]|T[0-9])(?:[0-9]+Y)?(?:[0-9]+M)?(?:[0-9]+D)?"
    r"(?:T(?=[0-9])(?:[0-9]+H)?(?:[0-9]+M)?(?:[0-9]+S)?)?)$"
)


def _rfc3339(value: object) -> object:
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.match(value)):
        return value
    raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-11-20T15:00:00+01:00")


def _duration(value: object) -> object:
    if isinstance(value, timedelta) or (isinstance(value, str) and _DURATION.match(value)):
        return value
    raise ValueError("must be an ISO 8601 duration, e.g. P1D or PT36H")


def _utc(value: datetime) -> datetime:
    # 0001-01-01T00:00:00+01:00 is valid RFC 3339 but has no UTC form that Python can hold.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_utc)]
Duration = Annotated[timedelta, BeforeValidator(_duration)]


def iso_duration(delta: timedelta) -> str:
    """ISO 8601 duration of a non-negative timedelta: P1DT2H3M4S."""
    total = int(delta.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    # Spelled out: it runs for every item of an overdue page. RFC 3339's grammar (the
    # schema's `format: duration`) has no hours followed directly by seconds: PT1H0M4S.
    time_part = (
        (f"{hours}H" if hours else "")
        + (f"{minutes}M" if minutes or (hours and seconds) else "")
        + (f"{seconds}S" if seconds else "")
    )
    if time_part:
        return f"P{days}DT{time_part}" if days else f"PT{time_part}"
    return f"P{days}D" if days else "PT0S"


# An owner's e-mail address: an RFC 5322 addr-spec (dot-atom or quoted local part, dot-atom
# or literal domain), alone: no display name, no comments, no folding (no CR or LF), ASCII.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_DOT_ATOM = rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*"
_QUOTED = r'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e]|\\[\t\x20-\x7e])*"'
_DOMAIN_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
ADDR_SPEC = rf"^(?:{_DOT_ATOM}|{_QUOTED})@(?:{_DOT_ATOM}|{_DOMAIN_LITERAL})$"
_ADDR_SPEC = re.compile(ADDR_SPEC)


def is_addr_spec(value: str) -> bool:
    # fullmatch: `$` alone would let a trailing newline through.
    return len(value) <= 254 and _ADDR_SPEC.fullmatch(value) is not None


def _addr_spec(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("must not contain a line break (CR or LF)")
    if is_addr_spec(value):
        return value
    if "<" in value:  # a quoted local part may hold one: only now is it a display name
        raise ValueError("must be the address alone (jane@example.com), without a display name")
    raise ValueError("must be an e-mail address (an RFC 5322 addr-spec, e.g. jane@example.com)")


EmailAddress = Annotated[
    str,
    StringConstraints(max_length=254),
    _Documented(ADDR_SPEC),
    AfterValidator(_addr_spec),
]
