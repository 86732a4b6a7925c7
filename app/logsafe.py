"""Request paths as logs may show them: the token of a status link or of a calendar feed
never reaches a log line."""

import re

_SECRET_TOKEN = re.compile(r"^/(s|ics)/[^/]*")


def loggable_path(path: str) -> str:
    """``path`` with the token of a status page (``/s/<token>...``) or of a calendar feed
    (``/ics/<token>.ics``) redacted."""
    return _SECRET_TOKEN.sub(r"/\1/[redacted]", path, count=1)
