"""The ceiling for event ingestion: verify the Standard Webhooks signature, parse the body, answer.

No database, no middleware, no mapping. Served the way `nextstep serve` serves the real
app (uvicorn, same options), with the secrets read from the same NEXTSTEP_WEBHOOK_SECRETS
variable, so that `bench/ingest.py` can compare the two with the same client.
"""

import argparse
import json
import os
import uuid

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRETS: dict[str, list[str]] = json.loads(os.environ.get("NEXTSTEP_WEBHOOK_SECRETS", "{}"))

app = FastAPI()


@app.post("/v1/events/{source}", status_code=202)
async def receive_event(source: str, request: Request) -> Response:
    body = await request.body()
    headers = dict(request.headers)
    for secret in SECRETS.get(source, []):
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
        except WebhookVerificationError:
            continue
        event = json.loads(body)
        if not isinstance(event, dict) or "type" not in event:
            return JSONResponse({"detail": "not an event"}, status_code=422)
        return JSONResponse({"delivery_id": str(uuid.uuid4()), "status": "applied"}, 202)
    return JSONResponse({"detail": "no signature matches"}, status_code=401)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "bare_ingest_app:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
