"""The browser and MCP test infrastructure works: Debian Chromium under Playwright (trusting a
TestCA, resolving test host names), the example MCP server, and the MCP SDK's OAuth client
logging in through a browser.

The OAuth test puts a minimal authorization server written for this test (`ScriptedEdge`)
in front of the example MCP server, so it checks the client side (tests/support/mcp.py and
tests/support/browser.py) and records what the SDK sends, independently of authgate's own
facade.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from tests.conftest import require_tool
from tests.support.browser import async_chromium_page, browser_problem, chromium_page
from tests.support.mcp import LoopbackCallback, McpServer, oauth_login
from tests.support.tls import TestCA

pytestmark = pytest.mark.integration

HOST = "mcp.example.test"  # not a real name: Chromium and the Python client map it to 127.0.0.1
RESOLVE = {HOST: "127.0.0.1"}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("mcp-infra-pki"))


# -- (i) Chromium renders a page and submits a form ---------------------------------------------
class FormSite:
    """An https site on 127.0.0.1: GET / is a form with a button, POST /submit is recorded."""

    PAGE = (
        b"<!doctype html><title>form</title><h1 id=title>Consent</h1>"
        b"<form method=post action=/submit><input type=hidden name=choice value=allow>"
        b"<button type=submit>Allow</button></form>"
    )

    def __init__(self, ca: TestCA) -> None:
        self.posts: list[dict[str, list[str]]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(FormSite.PAGE)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                site.posts.append(parse_qs(self.rfile.read(length).decode()))
                self._answer(b"<!doctype html><p id=done>Thanks</p>")

            def _answer(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        cert = ca.issue_server_cert("form-site", dns_names=[HOST], ip_addresses=["127.0.0.1"])
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert.cert, cert.key)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://{HOST}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FormSite:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_chromium_trusts_the_test_ca_and_submits_a_form(ca: TestCA, tmp_path: Path) -> None:
    require_tool(browser_problem())
    with FormSite(ca) as site:
        with chromium_page(trust_ca=ca.ca_path, resolve=RESOLVE, artifacts_dir=tmp_path) as page:
            page.goto(site.url)
            assert page.inner_text("#title") == "Consent"
            page.get_by_role("button", name="Allow").click()
            page.wait_for_selector("#done")
        assert site.posts == [{"choice": ["allow"]}]

        # Without the CA the same page is refused: the trust above came from trust_ca.
        with (
            chromium_page(resolve=RESOLVE) as page,
            pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"),
        ):
            page.goto(site.url)


# -- (ii) the example MCP server, reached by the SDK's client without OAuth ------------------------
@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpServer]:
    with McpServer(tmp_path_factory.mktemp("mcp-server"), allowed_hosts=[HOST]) as server:
        yield server


async def test_example_mcp_server_tools_and_identity_headers(mcp_server: McpServer) -> None:
    assert mcp_server.url is not None
    identity = {"X-Auth-Subject": "alice", "X-Auth-Scopes": "mcp:read mcp:write"}
    async with (
        httpx2.AsyncClient(headers=identity, trust_env=False, timeout=10.0) as http_client,
        Client(streamable_http_client(mcp_server.url, http_client=http_client)) as client,
    ):
        tools = await client.list_tools()
        echoed = await client.call_tool("echo", {"text": "hello"})
        whoami = await client.call_tool("whoami", {})
    assert {tool.name for tool in tools.tools} == {"echo", "whoami"}
    assert echoed.structured_content == {"result": "hello"}
    assert whoami.structured_content == {"subject": "alice", "scopes": "mcp:read mcp:write"}


async def test_example_mcp_server_checks_the_host_header(mcp_server: McpServer) -> None:
    """The name a proxy forwards (`allowed_hosts`, with or without a port) passes; any other is refused (421)."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"Accept": "application/json, text/event-stream"}
    statuses = {}
    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as http:
        for host in (HOST, f"{HOST}:8443", "evil.example"):
            response = await http.post(mcp_server.url or "", json=initialize, headers={**headers, "Host": host})
            statuses[host] = response.status_code
    assert statuses == {HOST: 200, f"{HOST}:8443": 200, "evil.example": 421}


# -- (iii) the SDK's OAuth client logs in through Chromium -----------------------------------------
class ScriptedEdge:
    """An https edge for `HOST` playing proxy + authorization server in the layout of
    examples/nginx/nginx.conf (metadata under /.well-known/oauth-*, the AS under /oauth2/), in
    front of the example MCP server. One user (alice) who clicks "Allow". Records every
    request in `log` as (method, path, params)."""

    def __init__(self, ca: TestCA, upstream: str) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        self.origin = f"https://{HOST}:{port}"
        self.resource = f"{self.origin}/mcp"
        self.upstream = upstream
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.clients: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, dict[str, str]] = {}
        self.codes: dict[str, dict[str, str]] = {}
        self.tokens: dict[str, str] = {}  # access token -> scope
        cert = ca.issue_server_cert("edge", dns_names=[HOST], ip_addresses=["127.0.0.1"])
        app = Starlette(
            routes=[
                Route("/.well-known/oauth-protected-resource/mcp", self.resource_metadata),
                Route("/.well-known/oauth-authorization-server", self.server_metadata),
                Route("/oauth2/register", self.register, methods=["POST"]),
                Route("/oauth2/authorize", self.authorize, methods=["GET", "POST"]),
                Route("/oauth2/token", self.token, methods=["POST"]),
                Route("/mcp", self.mcp, methods=["GET", "POST", "DELETE"]),
            ]
        )
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", ssl_certfile=str(cert.cert), ssl_keyfile=str(cert.key)
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def __enter__(self) -> ScriptedEdge:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "edge did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(5)
        self._socket.close()

    async def _params(self, request: Request) -> dict[str, str]:
        params = dict(request.query_params)
        if request.method == "POST" and request.headers.get("content-type", "").startswith("application/x-www-form"):
            params.update({k: str(v) for k, v in (await request.form()).items()})
        self.log.append((request.method, request.url.path, params))
        return params

    async def resource_metadata(self, request: Request) -> Response:
        await self._params(request)
        return JSONResponse(
            {"resource": self.resource, "authorization_servers": [self.origin], "scopes_supported": ["mcp:read"]}
        )

    async def server_metadata(self, request: Request) -> Response:
        await self._params(request)
        return JSONResponse(
            {
                "issuer": self.origin,
                "authorization_endpoint": f"{self.origin}/oauth2/authorize",
                "token_endpoint": f"{self.origin}/oauth2/token",
                "registration_endpoint": f"{self.origin}/oauth2/register",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
                "authorization_response_iss_parameter_supported": True,
            }
        )

    async def register(self, request: Request) -> Response:
        metadata = await request.json()
        self.log.append(("POST", "/oauth2/register", metadata))
        client_id = f"client-{len(self.clients) + 1}"
        self.clients[client_id] = metadata
        return JSONResponse({**metadata, "client_id": client_id, "client_id_issued_at": int(time.time())}, 201)

    async def authorize(self, request: Request) -> Response:
        params = await self._params(request)
        if request.method == "GET":
            client = self.clients[params["client_id"]]
            assert params["redirect_uri"] in client["redirect_uris"]
            request_id = secrets.token_urlsafe(8)
            self.pending[request_id] = params
            return HTMLResponse(
                "<!doctype html><title>Consent</title><form method=post action=/oauth2/authorize>"
                f"<input type=hidden name=request_id value={request_id}><button type=submit>Allow</button></form>"
            )
        asked = self.pending.pop(params["request_id"])
        code = secrets.token_urlsafe(16)
        self.codes[code] = asked
        query = urlencode({"code": code, "state": asked["state"], "iss": self.origin})
        return RedirectResponse(f"{asked['redirect_uri']}?{query}", 302)

    async def token(self, request: Request) -> Response:
        params = await self._params(request)
        asked = self.codes.pop(params.get("code", ""), None)
        if asked is None:
            return JSONResponse({"error": "invalid_grant"}, 400)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(params["code_verifier"].encode()).digest()).rstrip(b"=")
        if challenge.decode() != asked["code_challenge"] or params["redirect_uri"] != asked["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant"}, 400)
        access_token = secrets.token_urlsafe(24)
        self.tokens[access_token] = asked.get("scope", "")
        return JSONResponse({"access_token": access_token, "token_type": "Bearer", "expires_in": 300})

    async def mcp(self, request: Request) -> Response:
        self.log.append((request.method, "/mcp", {}))
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.tokens:
            challenge = (
                f'Bearer resource_metadata="{self.origin}/.well-known/oauth-protected-resource/mcp", scope="mcp:read"'
            )
            return JSONResponse({"error": "unauthorized"}, 401, headers={"WWW-Authenticate": challenge})
        # As nginx does: Host is the public name, identity headers replace the client's.
        dropped = {"host", "authorization", "content-length", "x-auth-subject", "x-auth-scopes"}
        headers = [(k, v) for k, v in request.headers.items() if k not in dropped]
        headers += [("Host", HOST), ("X-Auth-Subject", "alice"), ("X-Auth-Scopes", self.tokens[token])]
        http = httpx.AsyncClient(trust_env=False, timeout=30.0)
        upstream = await http.send(
            http.build_request(request.method, self.upstream, headers=headers, content=await request.body()),
            stream=True,
        )

        async def close() -> None:
            await upstream.aclose()
            await http.aclose()

        passed = {k: v for k, v in upstream.headers.items() if k.lower() not in {"content-length", "transfer-encoding"}}
        return StreamingResponse(
            upstream.aiter_raw(), upstream.status_code, headers=passed, background=BackgroundTask(close)
        )


@pytest.fixture
def edge(ca: TestCA, mcp_server: McpServer) -> Iterator[ScriptedEdge]:
    with ScriptedEdge(ca, mcp_server.url or "") as scripted:
        yield scripted


@pytest.fixture
def callback() -> Iterator[LoopbackCallback]:
    with LoopbackCallback() as receiver:
        yield receiver


@pytest.fixture
async def browser_page(ca: TestCA, tmp_path: Path) -> AsyncIterator[Any]:
    require_tool(browser_problem())
    async with async_chromium_page(trust_ca=ca.ca_path, resolve=RESOLVE, artifacts_dir=tmp_path) as page:
        yield page


async def test_sdk_oauth_client_logs_in_through_chromium(
    ca: TestCA, edge: ScriptedEdge, callback: LoopbackCallback, browser_page: Any
) -> None:
    async def click_allow(authorization_url: str) -> None:
        await browser_page.goto(authorization_url)
        await browser_page.get_by_role("button", name="Allow").click()
        await browser_page.wait_for_url(f"{callback.redirect_uri}?*")

    login = await oauth_login(
        edge.resource, verify=ca.ca_path, resolve=RESOLVE, redirect_handler=click_allow, callback=callback
    )

    assert set(login.tool_names) == {"echo", "whoami"}
    assert login.echo_text == "hello through authgate"
    assert login.tokens is not None and login.tokens.access_token in edge.tokens
    assert login.tokens.scope == "mcp:read"  # recorded from the request: the token answer had none
    assert login.client_info is not None and login.client_info.client_id == "client-1"
    assert "Authorization complete" in await browser_page.inner_text("#result")

    # The order of discovery and what the SDK sent (the module docstring of tests/support/mcp.py).
    paths = [(method, path) for method, path, _ in edge.log]
    first_mcp = paths.index(("POST", "/mcp"))
    assert paths[first_mcp : first_mcp + 7] == [
        ("POST", "/mcp"),  # 401 with resource_metadata and scope
        ("GET", "/.well-known/oauth-protected-resource/mcp"),
        ("GET", "/.well-known/oauth-authorization-server"),
        ("POST", "/oauth2/register"),
        ("GET", "/oauth2/authorize"),  # the browser
        ("POST", "/oauth2/authorize"),  # the browser clicks Allow
        ("POST", "/oauth2/token"),
    ]
    registration = next(params for method, path, params in edge.log if path == "/oauth2/register")
    assert registration["redirect_uris"] == [callback.redirect_uri]
    assert registration["token_endpoint_auth_method"] == "none"
    assert registration["grant_types"] == ["authorization_code", "refresh_token"]
    assert registration["scope"] == "mcp:read"
    authorize = parse_qs(urlsplit(login.authorization_url or "").query)
    assert authorize["resource"] == [edge.resource]
    assert authorize["scope"] == ["mcp:read"]
    assert authorize["code_challenge_method"] == ["S256"]
    token_request = next(params for method, path, params in edge.log if path == "/oauth2/token")
    assert token_request["resource"] == edge.resource
    assert token_request["grant_type"] == "authorization_code"
    # The Python client really went to the edge by name, over TLS verified against the TestCA.
    assert all(urlsplit(seen.url).hostname == HOST for seen in login.requests)
