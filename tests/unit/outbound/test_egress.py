"""The egress client against real sockets: a small HTTP/1.1 server on 127.0.0.1 whose
routes misbehave on purpose (redirects, endless bodies, slow answers) and, for TLS,
a certificate for "localhost" from a CA made per test."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from authgate.errors import (
    EgressBadResponse,
    EgressBlocked,
    EgressError,
    EgressRedirect,
    EgressTimeout,
    EgressTooLarge,
)
from authgate.outbound.egress import EgressClient, EgressPolicy, EgressResponse

# ---------------------------------------------------------------------------------------
# A deliberately misbehaving HTTP/1.1 server on 127.0.0.1


@dataclass
class Request:
    request_line: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    port: int
    connections: int = 0
    requests: list[Request] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [urlsplit(r.target).path for r in self.requests]


Writer = asyncio.StreamWriter


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _respond(
    writer: Writer, status: int, body: bytes, content_type: str = "application/json", **extra: str
) -> None:
    headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **extra}
    writer.write(_head(status, {k.replace("_", "-"): v for k, v in headers.items()}) + body)
    await writer.drain()


async def _until_client_leaves(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def _route(request: Request, reader: asyncio.StreamReader, writer: Writer) -> None:
    url = urlsplit(request.target)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    path = url.path
    if path == "/json":
        await _respond(writer, 200, b'{"issuer": "https://idp.example"}', Cache_Control="max-age=60")
    elif path == "/echo":
        echoed = {"request_line": request.request_line, "headers": request.headers}
        echoed["body"] = request.body.decode()
        await _respond(writer, 200, json.dumps(echoed).encode())
    elif path == "/array":
        await _respond(writer, 200, b"[1, 2]")
    elif path == "/text":
        await _respond(writer, 200, b"<html>not json</html>", "text/html")
    elif path == "/status":
        status = int(query["code"])
        await _respond(writer, status, b"" if status == 304 else b'{"error": "nope"}')
    elif path == "/redirect":
        await _respond(writer, 302, b"", Location="/json")
    elif path == "/gzip":
        await _respond(writer, 200, gzip.compress(b"{}"), Content_Encoding="gzip")
    elif path == "/sized":  # exactly n bytes, announced
        await _respond(writer, 200, b"a" * int(query["n"]), "text/plain")
    elif path == "/chunked":  # n bytes in 1 KiB chunks, then the terminating chunk
        writer.write(_head(200, {"Transfer-Encoding": "chunked"}))
        left = int(query["n"])
        while left:
            size = min(left, 1024)
            writer.write(f"{size:x}\r\n".encode() + b"a" * size + b"\r\n")
            left -= size
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    elif path == "/huge-declared":  # announces 10 MB, sends 100 bytes, then stalls
        writer.write(_head(200, {"Content-Length": "10000000"}) + b"a" * 100)
        await writer.drain()
        await _until_client_leaves(reader)
    elif path == "/endless-chunked":  # 1 KiB chunks without end, faster than any timeout
        writer.write(_head(200, {"Transfer-Encoding": "chunked"}))
        for _ in range(10_000):
            writer.write(b"400\r\n" + b"a" * 1024 + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.001)
    elif path == "/slow":  # answers after 1 s
        await asyncio.sleep(1.0)
        await _respond(writer, 200, b"{}")
    elif path == "/trickle":  # a byte every 50 ms: never idle long, never done
        writer.write(_head(200, {"Transfer-Encoding": "chunked"}))
        for _ in range(200):
            writer.write(b"1\r\na\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
    else:
        await _respond(writer, 404, b"{}")


@asynccontextmanager
async def serve(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    handlers: set[asyncio.Task[None]] = set()
    server: Server

    async def handle(reader: asyncio.StreamReader, writer: Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        server.connections += 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in head[1:] if line)
            headers = {k.lower(): v for k, v in headers.items()}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Request(head[0], head[0].split(" ")[1], headers, body)
            server.requests.append(request)
            await _route(request, reader, writer)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client gave up on us, as several tests intend
        finally:
            writer.close()
            handlers.discard(task)

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_context)
    server = Server(port=listener.sockets[0].getsockname()[1])
    try:
        yield server
    finally:
        listener.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await listener.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with serve() as running:
        yield running


Clients = Callable[..., EgressClient]


@pytest.fixture
async def client() -> AsyncIterator[Clients]:
    """Makes EgressClients from EgressPolicy keyword arguments; closes them afterwards."""
    made: list[EgressClient] = []

    def make(**policy: object) -> EgressClient:
        made.append(EgressClient(EgressPolicy(**policy)))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for each in made:
        await each.aclose()


# The plain-http server on 127.0.0.1 needs both.
LOCAL = {"insecure_http": True, "allow": ("127.0.0.0/8",)}


async def raises(kind: type[EgressError], call: Awaitable[object]) -> EgressError:
    with pytest.raises(kind) as caught:
        await call
    assert type(caught.value) is kind  # not merely a subclass: the reason matters to callers
    return caught.value


# ---------------------------------------------------------------------------------------
# Screening, without network


def teredo(server: str, client: str) -> str:
    """RFC 4380: 2001:0:<server v4>:<flags>:<port>:<client v4 with every bit flipped>."""
    bits = (0x20010000 << 96) | (int(ipaddress.IPv4Address(server)) << 64)
    return str(ipaddress.IPv6Address(bits | (~int(ipaddress.IPv4Address(client)) & 0xFFFFFFFF)))


SCREENED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.1.1", "link-local"),
    ("169.254.169.254", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.255", "CGNAT"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("192.0.0.8", "IETF protocol assignments"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.1", "documentation"),
    ("203.0.113.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("192.88.99.1", "6to4 relay"),
    # inet_aton forms a resolver would accept: refused by the strict URL parser before screening
    ("127.1", "dotted-quad"),
    ("2130706433", "dotted-quad"),
    ("0x7f.0.0.1", "dotted-quad"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("fd00:ec2::254", "cloud metadata"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "benchmarking"),
    ("100::1", "discard-only"),
    ("4000::1", "reserved"),
    # IPv6 disguises of screened IPv4
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:0:7f00:1", "IPv4-translated form of 127.0.0.1, loopback"),
    ("::127.0.0.1", "IPv4-compatible form of 127.0.0.1, loopback"),
    ("::10.0.0.1", "IPv4-compatible form of 10.0.0.1, private"),
    ("::8.8.8.8", "IPv4-compatible (deprecated"),
    ("64:ff9b::7f00:1", "NAT64 form of 127.0.0.1, loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64 form of 169.254.169.254, cloud metadata"),
    ("64:ff9b::a00:1", "NAT64 form of 10.0.0.1, private"),
    ("64:ff9b:1::808:808", "local-use NAT64"),
    ("2002:7f00:1::1", "6to4 form of 127.0.0.1, loopback"),
    ("2002:a9fe:a9fe::", "6to4 form of 169.254.169.254, cloud metadata"),
    ("2002:c0a8:101::1", "6to4 form of 192.168.1.1, private"),
    (teredo("8.8.8.8", "127.0.0.1"), "Teredo client form of 127.0.0.1, loopback"),
    (teredo("10.0.0.1", "8.8.4.4"), "Teredo server form of 10.0.0.1, private"),
    (teredo("8.8.8.8", "169.254.169.254"), "Teredo client form of 169.254.169.254"),
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "172.32.0.1",  # just past 172.16.0.0/12
    "172.15.255.255",
    "100.128.0.1",  # just past 100.64.0.0/10
    "100.63.255.255",
    "192.169.0.1",
    "11.0.0.1",
    "223.255.255.254",
    "2606:4700:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # DNS64 in an IPv6-only cluster: must keep working
    "2002:808:808::1",
    teredo("8.8.8.8", "1.1.1.1"),
]


def _url(address: str, scheme: str = "https") -> str:
    return f"{scheme}://[{address}]/" if ":" in address else f"{scheme}://{address}/"


@pytest.mark.parametrize(("address", "reason"), SCREENED)
def test_screened_addresses_are_refused(address: str, reason: str) -> None:
    with pytest.raises(EgressBlocked) as caught:
        EgressClient().check_url(_url(address))
    assert reason in caught.value.detail


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    EgressClient().check_url(_url(address))


def test_allow_entries_win_over_screening() -> None:
    egress = EgressClient(EgressPolicy(allow=("10.0.0.0/8", "169.254.169.254", "fd00::/8")))
    for address in ("10.1.2.3", "::ffff:10.1.2.3", "169.254.169.254", "fd00:ec2::254"):
        egress.check_url(_url(address))
    with pytest.raises(EgressBlocked, match="link-local"):
        egress.check_url("https://169.254.1.1/")


def test_deny_wins_over_allow_and_over_being_public() -> None:
    egress = EgressClient(
        EgressPolicy(
            allow=("10.0.0.0/8", "idp.example"),
            deny=("10.1.0.0/16", "8.8.8.0/24", "idp.example", "Evil.Example."),
        )
    )
    egress.check_url("https://10.2.0.1/")
    for url in (
        "https://10.1.2.3/",
        "https://8.8.8.8/",
        "https://[64:ff9b::808:808]/",  # deny reaches through disguises
        "https://[::ffff:8.8.8.8]/",
        "https://idp.example/",
        "https://EVIL.example./x",  # host names match case-insensitively, trailing dot removed
    ):
        with pytest.raises(EgressBlocked, match="deny"):
            egress.check_url(url)


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not a host", "*.example", ""])
def test_malformed_allow_or_deny_entries_fail_at_startup(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a CIDR nor a host name"):
        EgressClient(EgressPolicy(deny=(entry,)))


def test_https_required_and_http_only_to_allowed_destinations() -> None:
    with pytest.raises(EgressBlocked, match="https required"):
        EgressClient().check_url("http://idp.example/")
    with pytest.raises(EgressBlocked, match="https required"):
        EgressClient(EgressPolicy(allow=("10.0.0.0/8",))).check_url("http://10.1.2.3/")
    insecure = EgressClient(EgressPolicy(insecure_http=True, allow=("10.0.0.0/8", "idp.svc")))
    insecure.check_url("http://10.1.2.3/")
    insecure.check_url("http://idp.svc:8080/")
    with pytest.raises(EgressBlocked, match="not in egress allow"):
        insecure.check_url("http://8.8.8.8/")  # public, but plain http needs allow
    with pytest.raises(EgressBlocked, match="loopback"):
        insecure.check_url("http://127.0.0.1/")


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("ftp://idp.example/", "not https"),
        ("file:///etc/passwd", "not https"),
        ("https://alice:hunter2@idp.example/", "user name or password"),
        ("https:///path-only", "no host"),
        ("https://[::1/", "not a valid URL"),
    ],
)
def test_malformed_or_unsafe_urls_are_refused(url: str, detail: str) -> None:
    with pytest.raises(EgressBlocked) as caught:
        EgressClient().check_url(url)
    assert detail in caught.value.detail
    assert "hunter2" not in str(caught.value)


# ---------------------------------------------------------------------------------------
# Real connections


async def test_loopback_refused_by_default_and_allowed_by_allow(server: Server, client: Clients) -> None:
    url = f"http://127.0.0.1:{server.port}/json"
    error = await raises(EgressBlocked, client(insecure_http=True).get_json(url))
    assert "loopback" in str(error)
    assert url in str(error)
    error = await raises(EgressBlocked, client().get_json(f"https://127.0.0.1:{server.port}/"))
    assert "loopback" in str(error)
    assert server.connections == 0

    document, response = await client(**LOCAL).get_json(url)
    assert document == {"issuer": "https://idp.example"}
    assert response.status_code == 200
    assert response.max_age() == 60
    assert server.paths() == ["/json"]


async def test_host_name_resolving_to_loopback_is_refused_after_dns(server: Server, client: Clients) -> None:
    # Both URLs pass the static checks: only the resolved address can refuse them.
    plain = client(insecure_http=True, allow=("10.0.0.0/8",))
    url = f"http://localhost:{server.port}/json"
    plain.check_url(url)
    error = await raises(EgressBlocked, plain.get_json(url))
    assert "localhost resolved only to refused addresses" in error.detail
    assert "127.0.0.1 is loopback" in error.detail

    tls = client()
    tls.check_url(f"https://localhost:{server.port}/json")
    await raises(EgressBlocked, tls.get_json(f"https://localhost:{server.port}/json"))
    assert server.connections == 0  # refused before connecting, not after

    # The same name is reachable once its addresses are allowed.
    allowed = client(insecure_http=True, allow=("127.0.0.0/8", "::1/128"))
    document, _ = await allowed.get_json(url)
    assert document["issuer"] == "https://idp.example"


async def test_deny_wins_over_allow_at_connect_time(server: Server, client: Clients) -> None:
    egress = client(insecure_http=True, allow=("localhost",), deny=("127.0.0.0/8", "::1/128"))
    error = await raises(EgressBlocked, egress.get_json(f"http://localhost:{server.port}/json"))
    assert "is in egress deny" in error.detail
    egress = client(insecure_http=True, allow=("127.0.0.0/8",), deny=("127.0.0.1",))
    await raises(EgressBlocked, egress.get_json(f"http://127.0.0.1:{server.port}/json"))
    assert server.connections == 0


async def test_redirects_are_not_followed(server: Server, client: Clients) -> None:
    error = await raises(EgressRedirect, client(**LOCAL).get_json(f"http://127.0.0.1:{server.port}/redirect"))
    assert "302" in error.detail
    assert server.paths() == ["/redirect"]


async def test_not_modified_is_returned_not_taken_for_a_redirect(server: Server, client: Clients) -> None:
    response = await client(**LOCAL).request("GET", f"http://127.0.0.1:{server.port}/status?code=304")
    assert response.status_code == 304


async def test_body_up_to_the_cap_is_read_and_one_byte_more_is_refused(server: Server, client: Clients) -> None:
    egress = client(**LOCAL, max_response_bytes=4096)
    base = f"http://127.0.0.1:{server.port}"
    for route in ("sized", "chunked"):
        response = await egress.request("GET", f"{base}/{route}?n=4096")
        assert response.content == b"a" * 4096
        error = await raises(EgressTooLarge, egress.request("GET", f"{base}/{route}?n=4097"))
        assert "4096" in error.detail
    response = await egress.request("GET", f"{base}/sized?n=10000", max_bytes=10_000)
    assert len(response.content) == 10_000


async def test_announced_oversized_body_is_refused_without_waiting_for_it(server: Server, client: Clients) -> None:
    # The server announces 10 MB and stalls: waiting for it would end in EgressTimeout.
    egress = client(**LOCAL, max_response_bytes=4096, read_timeout=1.0, total_timeout=1.5)
    error = await raises(EgressTooLarge, egress.request("GET", f"http://127.0.0.1:{server.port}/huge-declared"))
    assert "Content-Length 10000000" in error.detail


async def test_endless_chunked_body_stops_once_past_the_cap(server: Server, client: Clients) -> None:
    egress = client(**LOCAL, max_response_bytes=64 * 1024, total_timeout=1.5)
    started = time.monotonic()
    error = await raises(EgressTooLarge, egress.request("GET", f"http://127.0.0.1:{server.port}/endless-chunked"))
    assert "body exceeds 65536 bytes" in error.detail
    assert time.monotonic() - started < 1.0  # well before the ~10 MB the server would send


async def test_slow_server_read_timeout(server: Server, client: Clients) -> None:
    egress = client(**LOCAL, read_timeout=0.2)
    error = await raises(EgressTimeout, egress.get_json(f"http://127.0.0.1:{server.port}/slow"))
    assert "read timed out after 0.2s" in error.detail


async def test_total_timeout_bounds_a_body_that_keeps_trickling(server: Server, client: Clients) -> None:
    # Every read succeeds within read_timeout; only the total timeout can end this.
    egress = client(**LOCAL, read_timeout=0.5, total_timeout=0.4)
    started = time.monotonic()
    error = await raises(EgressTimeout, egress.request("GET", f"http://127.0.0.1:{server.port}/trickle"))
    assert "within 0.4s" in error.detail
    assert time.monotonic() - started < 1.0


async def test_non_json_and_non_object_bodies(server: Server, client: Clients) -> None:
    egress = client(**LOCAL)
    error = await raises(EgressBadResponse, egress.get_json(f"http://127.0.0.1:{server.port}/text"))
    assert error.detail == "body is not JSON"
    assert error.status_code == 200
    error = await raises(EgressBadResponse, egress.get_json(f"http://127.0.0.1:{server.port}/array"))
    assert "not an object" in error.detail


async def test_non_200_is_returned_by_request_and_refused_by_get_json(server: Server, client: Clients) -> None:
    egress = client(**LOCAL)
    url = f"http://127.0.0.1:{server.port}/status?code=404"
    response = await egress.request("GET", url)
    assert (response.status_code, response.content) == (404, b'{"error": "nope"}')
    error = await raises(EgressBadResponse, egress.get_json(url))
    assert error.status_code == 404
    assert "404" in error.detail


async def test_compressed_body_is_refused_since_identity_was_asked(server: Server, client: Clients) -> None:
    egress = client(**LOCAL)
    error = await raises(EgressBadResponse, egress.get_json(f"http://127.0.0.1:{server.port}/gzip"))
    assert "gzip" in error.detail
    assert server.requests[0].headers["accept-encoding"] == "identity"


async def test_form_post_with_basic_auth_and_no_secret_in_errors(server: Server, client: Clients) -> None:
    egress = client(**LOCAL)
    base = f"http://127.0.0.1:{server.port}"
    response = await egress.request(
        "POST", f"{base}/echo", data={"grant_type": "client_credentials"}, auth=("app", "s3cret")
    )
    echoed = response.json_object()
    assert echoed["request_line"] == "POST /echo HTTP/1.1"
    assert echoed["body"] == "grant_type=client_credentials"
    assert echoed["headers"]["authorization"] == "Basic YXBwOnMzY3JldA=="
    assert echoed["headers"]["user-agent"] == "authgate"

    error = await raises(EgressRedirect, egress.request("POST", f"{base}/redirect", auth=("app", "s3cret")))
    assert "s3cret" not in str(error)
    assert "YXBwOnMzY3JldA" not in str(error)
    # A header value h11 refuses: its own message would quote the secret.
    error = await raises(
        EgressError,
        egress.request("GET", f"{base}/echo", headers={"Authorization": "Bearer s3cret\r\nX: y"}),
    )
    assert "s3cret" not in str(error)
    assert error.__cause__ is None


async def test_get_json_asks_for_json(server: Server, client: Clients) -> None:
    echoed, _ = await client(**LOCAL).get_json(f"http://127.0.0.1:{server.port}/echo")
    assert echoed["headers"]["accept"] == "application/json"


async def test_proxy_environment_variables_are_ignored(
    server: Server, client: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = "http://127.0.0.1:9"  # discard port: nothing listens there
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    document, _ = await client(**LOCAL).get_json(f"http://127.0.0.1:{server.port}/json")
    assert document["issuer"] == "https://idp.example"
    assert server.requests[0].request_line == "GET /json HTTP/1.1"  # origin form: direct


async def test_explicit_proxy_is_used_and_not_screened(server: Server, client: Clients) -> None:
    # The test server plays the proxy: http through a proxy sends the absolute URL to it.
    egress = client(proxy=f"http://127.0.0.1:{server.port}", insecure_http=True, allow=("upstream.test",))
    document, _ = await egress.get_json("http://upstream.test/json")
    assert document["issuer"] == "https://idp.example"
    assert server.requests[0].request_line == "GET http://upstream.test/json HTTP/1.1"


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("https://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("https://[64:ff9b::a9fe:a9fe]/", "NAT64 form of 169.254.169.254"),
        ("https://localhost/", "localhost is loopback"),
        ("https://auth.LOCALHOST./", "is loopback"),
        ("http://other.test/", "needs other.test in egress allow"),
    ],
)
async def test_proxy_mode_screens_what_the_url_shows(server: Server, client: Clients, url: str, detail: str) -> None:
    egress = client(proxy=f"http://127.0.0.1:{server.port}", insecure_http=True)
    error = await raises(EgressBlocked, egress.get_json(url))
    assert detail in error.detail
    assert server.connections == 0


def _issue_localhost_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for the DNS name "localhost" only (no IP SAN)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egress test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "localhost.pem", directory / "localhost-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


async def test_tls_verifies_the_url_host_while_connecting_to_the_screened_address(
    tmp_path: Path, client: Clients
) -> None:
    ca, cert, key = _issue_localhost_cert(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    allow = ("127.0.0.0/8", "::1/128")
    async with serve(server_context) as tls_server:
        url = f"https://localhost:{tls_server.port}/json"
        # Connected to 127.0.0.1, verified as "localhost": the certificate has no IP.
        document, _ = await client(allow=allow, ca_bundle=str(ca)).get_json(url)
        assert document["issuer"] == "https://idp.example"

        error = await raises(EgressError, client(allow=allow).get_json(url))
        assert "CERTIFICATE_VERIFY_FAILED" in error.detail  # the CA comes from ca_bundle only

        by_address = f"https://127.0.0.1:{tls_server.port}/json"
        error = await raises(EgressError, client(allow=allow, ca_bundle=str(ca)).get_json(by_address))
        assert "127.0.0.1" in error.detail  # hostname mismatch: verification is real


# ---------------------------------------------------------------------------------------
# Response helpers


def _response(content: bytes = b"{}", **headers: str) -> EgressResponse:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return EgressResponse("https://idp.example/x", 200, httpx.Headers(raw), content)


@pytest.mark.parametrize(
    ("cache_control", "max_age"),
    [
        (None, None),
        ("max-age=300", 300.0),
        ("public, max-age=0", 0.0),
        ('max-age="60"', 60.0),
        ("s-maxage=600, max-age=60", 60.0),
        ("s-maxage=600", None),
        ("max-age=300, no-store", None),
        ("no-cache, max-age=300", None),
        ('no-cache="Set-Cookie", max-age=300', 300.0),
        ("max-age=-1", None),
        ("max-age=1.5", None),
        ("max-age=abc", None),
        ("max-age=٣", None),  # a digit, but not an ASCII one
        ("max-age=60, max-age=120", None),
        ("max-age=99999999999999999999", float(2**31)),
    ],
)
def test_max_age(cache_control: str | None, max_age: float | None) -> None:
    headers = {} if cache_control is None else {"Cache-Control": cache_control}
    assert _response(**headers).max_age() == max_age


@pytest.mark.parametrize("content", [b"", b"null", b'"text"', b"NaN", b'{"a": NaN}', b"\xff\xfe{}", b"[" * 100_000])
def test_json_object_refuses_what_is_not_a_json_object(content: bytes) -> None:
    with pytest.raises(EgressBadResponse) as caught:
        _response(content).json_object()
    assert caught.value.status_code == 200
    assert caught.value.url == "https://idp.example/x"


def test_json_object() -> None:
    assert _response('{"keys": [], "name": "é"}'.encode()).json_object() == {
        "keys": [],
        "name": "é",
    }
