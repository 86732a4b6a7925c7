"""How the JSON API reads a request: bodies with ``jsonbody.loads``, query parameters once."""

from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
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


def refuse_repeated_parameters(request: Request) -> None:
    """Every query parameter of the API takes one value: one given twice (``?limit=1&limit=2``)
    is a 422 rather than a guess at which one was meant."""
    counts = Counter(name for name, _value in request.query_params.multi_items())
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", name),
                    "msg": "is given more than once; give it once",
                    "input": request.query_params.getlist(name),
                }
                for name in repeated
            ]
        )
