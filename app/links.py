"""The base of every link the service prints (status pages today; e-mails and feeds too).

Every such link is made by ``public_link``, so that they all follow one rule:
``NEXTSTEP_PUBLIC_URL`` when it is set; otherwise an address at which this server answers.
Inside a request that is the request's own base URL (the scheme, host and port the client
used, which is this server's); outside one (the worker) it is the host and port
``nextstep serve`` listens on. Behind a proxy neither is what the outside world reaches, so
the variable must be set there.
"""

import ipaddress

from app.config import get_settings

# A listener on every address has no address of its own to link to: loopback answers, on
# this machine only.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def _serving_base() -> str:
    settings = get_settings()
    host = _ANY_ADDRESS.get(settings.host, settings.host)
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name, used as it is
    return f"http://{host}:{settings.port}"


def public_base(request_base: str | None = None) -> str:
    """Where links point, without a trailing slash. ``request_base`` is the base URL of the
    request being answered (``str(request.base_url)``), None outside a request."""
    configured = get_settings().public_url
    if configured is not None:
        return configured
    if request_base is not None:
        return request_base.rstrip("/")
    return _serving_base()


def public_link(path: str, request_base: str | None = None) -> str:
    """An absolute link to ``path`` (which starts with ``/``) on this service."""
    return public_base(request_base) + path
