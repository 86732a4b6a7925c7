"""Request paths as logs may show them: the token of a status link, a calendar feed, an
action link or an unsubscribe link never reaches a log line."""

import re

_SECRET_TOKEN = re.compile(r"^/(s|ics|a|u)/[^/]*")


def loggable_path(path: str) -> str:
    """``path`` with the token of a status page (``/s/<token>...``), a calendar feed
    (``/ics/<token>.ics``), an action page (``/a/<token>``) or an unsubscribe page
    (``/u/<token>``) redacted."""
    return _SECRET_TOKEN.sub(r"/\1/[redacted]", path, count=1)
