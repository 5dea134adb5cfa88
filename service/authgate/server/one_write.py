"""The check port's HTTP protocol: Uvicorn's httptools protocol, answering in one write.

Uvicorn writes a response's status line and headers when the application sends
`http.response.start`, and its body on `http.response.body`: two send(2) calls and two
TCP segments for every answer with a body. On the check port that is every denial (the
contract's small JSON object), and on loopback the kernel delivers each segment in the
sender's time: a 401 cost 1.24 times a cached allow, 0.87 times with this protocol
(bench/REPORT.md). No option of Uvicorn's joins them, and the check port is the one hot
path, so this protocol gives Uvicorn's response cycle a transport that holds what it
writes until the response is complete, the connection closes or `HELD_BYTES_MAX` is
held, then writes it at once. Parsing, keep-alive, flow control and errors stay
Uvicorn's. The price is a few Python calls per answer (about 0.6 µs, in-process),
against one system call and one segment fewer for every answer with a body.

Only for applications that answer whole (the check app never streams, nor reads a body,
so no `100 Continue` waits behind a held response); the server runs without WebSocket
upgrades (listeners.py), which would hand this transport to a protocol that never says
its response is complete.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HELD_BYTES_MAX = 64 * 1024


class HeldWrites:
    """A transport's writes, held until `flush()`; everything else is the transport's."""

    __slots__ = ("_held", "_size", "_transport", "is_closing")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: list[bytes] = []
        self._size = 0
        self.is_closing = transport.is_closing  # asked once per response: no Python frame

    def write(self, data: bytes) -> None:
        self._held.append(data)
        self._size += len(data)
        if self._size > HELD_BYTES_MAX:
            self.flush()

    def flush(self) -> None:
        held = self._held
        if held:
            data = b"".join(held) if len(held) > 1 else held[0]
            held.clear()
            self._size = 0
            if data and not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class OneWriteProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # flow control keeps the transport itself
        self.transport = HeldWrites(transport)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()
