"""Request paths as logs may show them: a status link's token never reaches a log line."""

import re

_STATUS_TOKEN = re.compile(r"^/s/[^/]*")


def loggable_path(path: str) -> str:
    """``path`` with the token of a status page (``/s/<token>...``) redacted."""
    return _STATUS_TOKEN.sub("/s/[redacted]", path, count=1)
