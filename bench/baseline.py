"""The speed reference: a bare Starlette route under Uvicorn with authgate's settings.

    python -m bench.baseline PORT          # Starlette, routes `/` and `/async`
    python -m bench.baseline PORT raw      # a raw ASGI app: 200 "ok", nothing else

Settings copied from authgate.server._config (httptools, no access log, no lifespan,
no server header, keep-alive 75 s, one worker), plus the uvloop loop that
authgate.server.run installs.

Two routes: `/` is `Route('/', lambda r: PlainTextResponse('ok'))` as specified; a plain
function endpoint makes Starlette run it in its thread pool, so `/async` (the same
answer from an `async def`) is measured as well: it is the fair peer of authgate's
check app, which never leaves the event loop.
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def ok(request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok")), Route("/async", ok)])

_RAW_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
_RAW_BODY = {"type": "http.response.body", "body": b"ok"}


async def raw_app(scope, receive, send) -> None:
    await send(_RAW_START)
    await send(_RAW_BODY)


def main(port: int, raw: bool = False) -> None:
    config = uvicorn.Config(
        raw_app if raw else app,
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=10,
        workers=1,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main(int(sys.argv[1]), raw=sys.argv[2:] == ["raw"])
