"""The route class of the JSON API: request bodies are parsed with ``jsonbody.loads``."""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from app import jsonbody


class _DepthLimitedRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = jsonbody.loads(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """A route whose JSON body is parsed with one nesting limit (a too deep body is a 422)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def depth_limited(request: Request) -> Response:
            return await handler(_DepthLimitedRequest(request.scope, request.receive))

        return depth_limited
