"""The ceilings, launched through `quotaledger serve`'s own command: `bare_passthrough.py`
(a bare Starlette JSON route answering `GET /api/user/self` with the very bytes the real
server answered, and a bare Starlette + aiohttp pass-through of the chat routes, importing
nothing of quotaledger's).

It runs `serve` (same flags, same environment, same logging set-up) with the engine's
target swapped: whatever settings `serve` gives Granian (workers, HTTP modes, head limits,
backpressure, access log, ...) the ceiling gets too; only the application differs. If
`serve` stops building its engine through `quotaledger.cli.serve.engine` with the target
`APP`, the route `/__ceiling__` is missing and the benchmark refuses to run rather than
compare the server with itself.

    python benchmarks/ceiling_app.py --port 8001 --workers 1 --database-url sqlite:///x.db
    (QLB_CEILING_BODY=path of the JSON body to serve; QLB_UPSTREAM=the fake upstream's URL)
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    from quotaledger.cli import serve as serve_module

    serve_module.APP = "bare_passthrough:create_app"
    print("CEILING_ENGINE_TARGET " + serve_module.APP, flush=True)
    serve_module.serve.main(args=argv, prog_name="quotaledger serve (ceiling)")


if __name__ == "__main__":
    main(sys.argv[1:])
