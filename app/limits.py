"""Refuses request bodies over the configured size before they are read whole, and bodies
in a content coding the service does not decode."""

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import send_problem


class _BodyTooLarge(HTTPException):
    # An HTTPException, so that the framework's body parsing passes it on as a 413
    # instead of turning it into "error parsing the body".
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"Request bodies are limited to {max_bytes} bytes.")


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, send: Send) -> None:
        detail = f"Request bodies are limited to {self.max_bytes} bytes."
        await send_problem(send, 413, detail, scope["path"], [(b"connection", b"close")])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        coding = headers.get(b"content-encoding", b"").strip().lower()
        if coding not in (b"", b"identity"):
            # Signatures cover the bytes as sent, and a compressed body could expand past the
            # size limit: bodies are taken uncompressed only.
            detail = (
                f"Content-Encoding {coding.decode('latin-1')!r} is not supported; "
                "send the body uncompressed."
            )
            await send_problem(
                send, 415, detail, scope["path"], [(b"accept-encoding", b"identity")]
            )
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:  # raised where no framework handler catches it
            if not started:
                await self._refuse(scope, send)
