"""A real Uvicorn server for an ASGI app, in a background thread of the test process.

The listening socket is bound before the server starts (port 0 by default), so its port is
known at once and no other process can take it in between.

    server = ThreadedServer(app, name="echo upstream")     # optional: host, port, tls=(cert, key)
    with server:
        httpx.get(f"http://127.0.0.1:{server.port}/")
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn


class ThreadedServer:
    def __init__(
        self,
        app: Any,
        *,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[str | Path, str | Path] | None = None,
        graceful_shutdown: float | None = None,
        http: Any = "auto",
    ) -> None:
        """`tls`: certificate and key files to serve https; `graceful_shutdown`: seconds open
        requests get at stop (clients that keep connections alive otherwise hold it up);
        `http`: Uvicorn's HTTP protocol (a name or a class)."""
        self.name = name
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        options: dict[str, Any] = {}
        if tls is not None:
            options |= {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])}
        if graceful_shutdown is not None:
            options["timeout_graceful_shutdown"] = graceful_shutdown
        config = uvicorn.Config(
            app, interface="asgi3", lifespan="off", log_config=None, access_log=False, http=http, **options
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} on {self.host}:{self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
            self._thread = None
        self._socket.close()

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
