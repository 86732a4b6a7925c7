"""httpx's client API over aiohttp's connections, for the outbound worker.

httpx's own pool posted a few hundred requests a second to a local keep-alive receiver on
this machine, and fewer as concurrency rose; aiohttp's connector several thousand
(bench/RESULTS.md, "Outbound"). The sender keeps speaking httpx (``sending.send``), and
this transport carries its requests.

What the sender relies on, kept here:
- the request goes to the URL's host as given, which ``destination.py`` has pinned to a
  vetted address: an address literal is never resolved again by aiohttp;
- the ``sni_hostname`` extension becomes aiohttp's ``server_hostname``, so TLS names and
  checks the endpoint's own host; aiohttp keys its pool by that name too, so a connection
  made for one host name is never reused for another at the same address;
- redirects are never followed, and no cookie is kept between endpoints;
- aiohttp's errors become httpx's (a refused connection ``ConnectError``, no answer in time
  ``TimeoutException``), so an attempt's error reads the same whichever transport sent it.

The answer's body is read up to ``MAX_ANSWER_BYTES`` (nothing but its status and headers is
used): an endpoint cannot make the worker hold a large body in memory.
"""

import ssl
from typing import Any

import aiohttp
import httpx
from yarl import URL

MAX_ANSWER_BYTES = 64 * 1024


def _timeouts(extensions: dict[str, Any]) -> aiohttp.ClientTimeout:
    given = extensions.get("timeout", {})
    return aiohttp.ClientTimeout(
        total=None,
        connect=given.get("pool"),
        sock_connect=given.get("connect"),
        sock_read=given.get("read"),
    )


def _as_httpx_error(exc: Exception, request: httpx.Request) -> httpx.HTTPError:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text, request=request)
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return httpx.ReadTimeout(text, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(text, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(text, request=request)
    return httpx.ReadError(f"{type(exc).__name__}: {text}", request=request)


async def _answer_body(answer: aiohttp.ClientResponse) -> bytes:
    """The body up to ``MAX_ANSWER_BYTES``; read whole when shorter, so that the connection
    goes back to the pool (one left unread is closed instead)."""
    chunks, size = [], 0
    async for chunk in answer.content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_ANSWER_BYTES:
            break
    return b"".join(chunks)[:MAX_ANSWER_BYTES]


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (made on the first request, inside the running event loop) with
    keep-alive connections pooled per address, port and TLS server name."""

    def __init__(
        self,
        max_connections: int,
        keepalive_seconds: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_seconds = keepalive_seconds
        # By default httpx's context: certifi's roots, no environment variables.
        self._ssl = ssl_context or httpx.create_ssl_context(trust_env=False)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,  # the worker caps each endpoint itself (worker.py)
                keepalive_timeout=self._keepalive_seconds,
                ssl=self._ssl,
                use_dns_cache=False,  # hosts are vetted addresses; nothing to resolve
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=("Accept-Encoding", "Accept"),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._client()
        try:
            async with session.request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=request.content or None,
                allow_redirects=False,
                server_hostname=request.extensions.get("sni_hostname"),
                timeout=_timeouts(request.extensions),
            ) as answer:
                body = await _answer_body(answer)
                status, headers, reason = answer.status, answer.raw_headers, answer.reason
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx_error(exc, request) from exc
        extensions = {"http_version": b"HTTP/1.1", "reason_phrase": (reason or "").encode()}
        return httpx.Response(
            status, headers=list(headers), content=body, request=request, extensions=extensions
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
