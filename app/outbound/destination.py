"""Where an attempt may connect: the endpoint's host resolved at send time, each address
vetted, and the request pinned to a vetted one.

A URL is checked when it is registered (``check_url``), but only its literal host can be
checked then: a name may resolve to a link-local address (a cloud metadata service) or to
an unspecified one (0.0.0.0, which on Linux reaches this machine's own listeners), and DNS
can change between registration and any later attempt. So every attempt resolves the host itself,
refuses the addresses no message may reach, and connects to the address it vetted, never
to one the transport would resolve again. The Host header and the TLS server name (SNI,
and so the certificate check) stay the endpoint's own host name.
"""

import asyncio
import functools
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def forbidden_reason(address: Address) -> str | None:
    """Why no message may go to ``address``; None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return "is an unspecified address"
    if address.is_link_local:
        return "is a link-local address"
    return None


_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_URL_SPACE = re.compile(r"[\x00-\x20\x7f]")


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names literally, in any spelling a resolver takes as one:
    ``169.254.169.254``, ``[fe80::1]``, but also ``0``, ``2852039166`` or ``0xa9.254.1``."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def check_url(value: str) -> str:
    """An http or https URL with a host that is not link-local or unspecified, as given;
    ValueError says what is wrong (the endpoint schemas make it a 422 naming the field).
    A host name is checked again at each attempt, resolved."""
    if _URL_SPACE.search(value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)  # a bracketed host that is no IPv6 address raises
        host = parts.hostname
        parts.port  # noqa: B018 (a port out of range raises)
    except ValueError as exc:
        raise ValueError(f"is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise ValueError("must be an http:// or https:// URL")
    if not host:
        raise ValueError("must name a host")
    address = _literal_address(host.split("%", 1)[0])
    problem = forbidden_reason(address) if address is not None else None
    if problem:
        raise ValueError(f"host {host} {problem}; messages cannot go there")
    return value


class DestinationRefused(Exception):
    """The attempt may not connect; the message says why, for the attempt log."""


@dataclass(frozen=True)
class Destination:
    """A request's URL with a vetted address as its host, and what keeps the host name."""

    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, Any] = field(default_factory=dict)


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` has now, in the resolver's order of preference."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@functools.lru_cache(maxsize=4096)
def _address_as_written(host: str) -> tuple[str, ...]:
    """A host that is an address in its usual spelling, as the resolver would return it,
    without asking the resolver (a thread and a system call per attempt)."""
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        return ()


@functools.lru_cache(maxsize=4096)
def _parsed(url: str) -> tuple[httpx.URL, str, int]:
    """An endpoint URL parsed once, not at every attempt: its host and port. Only the
    parsing is kept; the address is vetted at each attempt."""
    target = httpx.URL(url)
    port = target.port or _DEFAULT_PORTS.get(target.scheme, 80)
    return target, target.raw_host.decode("ascii"), port


@functools.lru_cache(maxsize=4096)
def _pinned(url: str, address: str) -> Destination:
    target, host, _port = _parsed(url)
    pinned = target.copy_with(host=address)
    extensions = {"sni_hostname": host} if target.scheme == "https" else {}
    return Destination(pinned, {"host": target.netloc.decode("ascii")}, extensions)


async def vetted_destination(url: str, timeout: float) -> Destination:
    """Where to send a request for ``url``: its host resolved now, pinned to the first
    address a message may reach. Raises DestinationRefused when there is none.

    The answer is shared between attempts (its URL and headers never change): a caller
    copies ``extensions`` before handing it to httpx, which adds to it."""
    _target, host, port = _parsed(url)
    found = _address_as_written(host)
    try:
        found = found or tuple(await asyncio.wait_for(resolve(host, port), timeout))
    except (OSError, TimeoutError) as exc:
        raise DestinationRefused(f"could not resolve host {host}: {exc or 'timed out'}") from None
    refusals = []
    for text in found:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        reason = forbidden_reason(address)
        if reason is None:
            return _pinned(url, str(address))
        refusals.append(f"{address} {reason}")
    if not refusals:
        raise DestinationRefused(f"host {host} has no address")
    raise DestinationRefused(
        f"host {host} resolves to {'; '.join(refusals)}: not sent (messages never go to"
        " link-local or unspecified addresses)"
    )
