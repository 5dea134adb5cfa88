"""The check port's protocol (server/one_write.py) on a real Uvicorn server and socket: a
response leaves in one write, whole, and the connection goes on as Uvicorn's does."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import pytest
from tests.infra.threaded_server import ThreadedServer

from authgate.server.one_write import HELD_BYTES_MAX, OneWriteProtocol

pytestmark = pytest.mark.integration


async def _answer_slowly(scope, receive, send) -> None:
    """Headers, then a pause, then the body: apart, they would reach the client apart."""
    if scope["type"] != "http":
        return
    size = int(scope["query_string"] or b"5")
    await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", str(size).encode())]})
    await asyncio.sleep(0.3)
    await send({"type": "http.response.body", "body": b"x" * size})


@contextlib.contextmanager
def _connected(protocol) -> Iterator[socket.socket]:
    with (
        ThreadedServer(_answer_slowly, name="one write", http=protocol) as server,
        socket.create_connection((server.host, server.port), timeout=5) as connection,
    ):
        yield connection


def _request(connection: socket.socket, query: str = "") -> bytes:
    """The first bytes the client receives for one request (one recv)."""
    connection.sendall(f"GET /{'?' + query if query else ''} HTTP/1.1\r\nHost: check\r\n\r\n".encode())
    return connection.recv(1 << 20)


@pytest.mark.parametrize(("protocol", "whole"), [(OneWriteProtocol, True), ("httptools", False)])
def test_the_status_line_headers_and_body_arrive_together(protocol, whole):
    with _connected(protocol) as connection:
        first = _request(connection)
        assert first.startswith(b"HTTP/1.1 401 ")
        assert first.endswith(b"\r\n\r\nxxxxx") is whole  # Uvicorn's own: headers first, body later


def test_keep_alive_goes_on_and_a_body_over_the_hold_limit_arrives_whole():
    with _connected(OneWriteProtocol) as connection:
        assert _request(connection).endswith(b"xxxxx")
        assert _request(connection).endswith(b"xxxxx")  # the same connection, answered again
        large = HELD_BYTES_MAX * 2
        received = _request(connection, str(large))
        while len(received) < large:
            received += connection.recv(1 << 20)
        assert received.endswith(b"x" * 1024) and received.count(b"x") == large
