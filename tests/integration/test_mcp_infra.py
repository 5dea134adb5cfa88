"""The browser and MCP test infrastructure works: Debian Chromium under Playwright (trusting a
TestCA, resolving test host names) and the example MCP server reached by the MCP SDK's client.
The SDK's OAuth client logging in through Chromium is tests/e2e/test_mcp_facade.py, against
authgate's real facade.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from tests.infra.availability import require_tool
from tests.infra.browser import browser_problem, chromium_page
from tests.infra.mcp import McpServer
from tests.infra.tls import TestCA

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
