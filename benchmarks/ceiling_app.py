"""The ceiling: a bare Starlette route answering `GET /api/user/self` with the very bytes
the real server answered (no auth, no database, no middleware).

It is started through `quotaledger serve`'s own command (same flags, same environment, same
logging set-up), with `uvicorn.run` intercepted: whatever settings `serve` passes to uvicorn
(workers, log level, access log, loop, http parser, proxy headers, ...) the ceiling gets too,
only the application differs. If `serve` ever stops calling `uvicorn.run`, the route
`/__ceiling__` is missing and the benchmark refuses to run rather than compare the server
with itself.

    python benchmarks/ceiling_app.py --port 8001 --workers 1 --database-url sqlite:///x.db
    (QLB_CEILING_BODY=path of the JSON body to serve)

With QLB_UPSTREAM=http://host:port (the fake upstream), it is the relay's ceiling instead:
`relay_ceiling.py`'s bare pass-through of `POST /v1/chat/completions` and `/v1/messages`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def create_app() -> Starlette:
    upstream = os.environ.get("QLB_UPSTREAM")
    if upstream:
        from relay_ceiling import passthrough_app

        return passthrough_app(upstream)
    path = os.environ.get("QLB_CEILING_BODY")
    body = Path(path).read_bytes() if path else b'{"success":true,"message":null,"data":{}}'

    async def user_self(request: Request) -> Response:
        return Response(body, media_type="application/json")

    async def marker(request: Request) -> Response:
        return Response(status_code=204)

    return Starlette(routes=[Route("/api/user/self", user_self), Route("/__ceiling__", marker)])


def main(argv: list[str]) -> None:
    import uvicorn

    from quotaledger.cli.serve import serve

    real_run = uvicorn.run

    def run_ceiling(app: Any, **settings: Any) -> None:
        shown = {k: v for k, v in settings.items() if k not in ("host", "port")}
        print("CEILING_UVICORN_SETTINGS " + json.dumps(shown, default=repr), flush=True)
        settings["factory"] = True
        real_run("ceiling_app:create_app", **settings)

    uvicorn.run = run_ceiling  # type: ignore[assignment]
    serve.main(args=argv, prog_name="quotaledger serve (ceiling)")


if __name__ == "__main__":
    main(sys.argv[1:])
