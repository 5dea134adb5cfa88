"""Run the service's ports (public, check, admin, metrics) as Uvicorn servers sharing
one process and one event loop, with one signal handler for all of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass

import uvicorn

log = logging.getLogger("authgate")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # signals are handled once for every port, in serve()


@dataclass(frozen=True)
class Listener:
    name: str
    app: object
    host: str
    port: int
    http: type[asyncio.Protocol] | str = "httptools"  # Uvicorn's protocol, or one made from it (one_write.py)


def _config(listener: Listener) -> uvicorn.Config:
    return uvicorn.Config(
        listener.app,
        host=listener.host,
        port=listener.port,
        http=listener.http,
        ws="none",  # no port of authgate's speaks WebSocket: upgrade requests are plain requests
        lifespan="off",
        access_log=False,  # the decision log is the access log; uvicorn's would print query strings
        log_config=None,
        server_header=False,
        # The client address is the socket's: X-Forwarded-For counts only where a port says
        # so (the facade's --forwarded-for-hops), never for every loopback peer (uvicorn's default).
        proxy_headers=False,
        timeout_keep_alive=75,  # proxies keep their connections to the auth service open
        timeout_graceful_shutdown=10,
    )


async def serve(
    listeners: list[Listener],
    on_start: Callable[[], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
    on_drain: Callable[[], Awaitable[None]] | None = None,
    drain_seconds: float = 0.0,
) -> None:
    """Serve until SIGTERM or SIGINT. With `drain_seconds`, the first signal only starts a
    drain: `on_drain` (readiness turns false), every listener keeps serving, open keep-alive
    connections included, and only then do they stop, finishing what is in flight
    (Uvicorn's graceful shutdown). A second signal stops at once."""
    servers = [_Server(_config(listener)) for listener in listeners]
    loop = asyncio.get_running_loop()
    draining: asyncio.Task[None] | None = None

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    def terminate() -> None:
        nonlocal draining
        if draining is not None or drain_seconds <= 0:
            stop()
            return
        log.info("draining: not ready, still serving", extra={"seconds": drain_seconds})
        draining = loop.create_task(on_drain() if on_drain is not None else asyncio.sleep(0))
        loop.call_later(drain_seconds, stop)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, terminate)
    try:
        tasks = [asyncio.create_task(server.serve()) for server in servers]
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                stop()
                break
            await asyncio.sleep(0.02)
        else:
            if on_start is not None:
                await on_start()
            log.info(
                "listening",
                extra={"ports": {listener.name: listener.port for listener in listeners}},
            )
        await asyncio.gather(*tasks)
    finally:
        if on_stop is not None:
            await on_stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if not all(server.started for server in servers):
        raise SystemExit(1)


def run(main: Awaitable[None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency via uvicorn[standard]
        asyncio.run(main)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
