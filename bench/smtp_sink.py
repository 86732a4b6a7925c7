"""A local SMTP sink for the e-mail bench: accepts every message and appends its Message-ID
to a file, one a line, so that the bench can count arrivals and duplicates.

    python bench/smtp_sink.py PORT FILE
"""

import re
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

_MESSAGE_ID = re.compile(rb"^Message-ID: *(\S+)\r?$", re.MULTILINE | re.IGNORECASE)


class Sink:
    def __init__(self, path: str) -> None:
        self.out = open(path, "ab", buffering=0)  # noqa: SIM115 (open for the process's life)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        found = _MESSAGE_ID.search(data)
        self.out.write((found.group(1) if found else b"-") + b"\n")
        return "250 OK"


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(path), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        controller.stop()


if __name__ == "__main__":
    main()
