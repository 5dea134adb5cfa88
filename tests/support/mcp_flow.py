"""The MCP login through authgate's facade as the user and the client live it, shared by the
host-based flow (tests/e2e/test_mcp_facade.py: nginx, `authgate serve` processes) and the
in-cluster one (tests/e2e/test_node_mcp.py: every server part a pod behind Traefik).

    user = User(page, tmp_path / "consent.png")          # the person at the browser
    login = await oauth_login(resource, ..., redirect_handler=functools.partial(
        user.allow, redirect_uri=callback.redirect_uri), client_name=CLIENT_NAME)
    whoami, echoed = await mcp_session(resource, token, context, resolve)   # another session
    response = await raw_tool_call(resource, context, resolve, bearer=None)   # the proxy's answer

`RULES` is the policy rule both flows install: exactly the MCP methods the SDK sends
(tests/infra/mcp.py), `server/discover` first.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from tests.infra.mcp import LoopbackTransport, SeenRequest
from tests.support.leaks import MINTED_TOKENS

CLIENT_NAME = "Example MCP client"
RULES = """\
  rules:
    - {pathPrefix: /mcp, mcpMethods: [server/discover, tools/list, tools/call], requireScopes: ["mcp:read"]}
"""
# docs/images/consent.png is (re)written when missing or with UPDATE_SCREENSHOTS=1, so that
# ordinary runs leave the checkout clean (the page shows the run's ports and client id).
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "consent.png"


@dataclass
class User:
    """The person at the browser: opens the authorization URL, checks and photographs the
    consent page, clicks Allow and is sent on to the IdP and back to the client. Keeps what
    the main frame loaded and what the console said (CSP violations show up there).
    `publish`: also copy the screenshot to docs/images/consent.png (see DOCS_SCREENSHOT)."""

    page: Any
    screenshot: Path
    publish: bool = False
    consent_text: str = ""
    navigations: list[tuple[str, str, int]] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("response", self._on_response)
        self.page.on("console", lambda message: self.console.append(message.text))

    def _on_response(self, response: Any) -> None:
        if response.request.is_navigation_request():
            self.navigations.append((response.request.method, response.url.split("?", 1)[0], response.status))

    async def allow(self, authorization_url: str, redirect_uri: str) -> None:
        await self.page.goto(authorization_url)
        allow = self.page.get_by_role("button", name="Allow")
        try:
            await allow.wait_for(timeout=45_000)  # a loaded 2-core machine renders slowly
        except Exception as error:
            shown = await self.page.inner_text("body")
            raise AssertionError(f"no consent page: the browser shows {shown!r} at {self.page.url}") from error
        await self.page.screenshot(path=str(self.screenshot))
        if self.publish and (not DOCS_SCREENSHOT.exists() or os.environ.get("UPDATE_SCREENSHOTS") == "1"):
            DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.screenshot, DOCS_SCREENSHOT)
        self.consent_text = await self.page.inner_text("main")
        await allow.click()
        try:
            await self.page.wait_for_url(f"{redirect_uri}?*")
        except Exception as error:
            shown = await self.page.inner_text("body")
            raise AssertionError(
                f"after Allow the browser did not reach the client: it shows {shown!r} at {self.page.url}; "
                f"main-frame loads {self.navigations}; console {self.console}"
            ) from error


def json_part(token: str, index: int) -> dict:
    """A base64url JSON part of a JWT (1: claims) or JWE (0: protected header)."""
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def forged(token: str, **claims: Any) -> str:
    """`token` with `claims` changed and its signature kept: what an attacker can make."""
    header, _, signature = token.split(".")
    payload = base64.urlsafe_b64encode(json.dumps({**json_part(token, 1), **claims}).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}.{signature}"


# What the SDK's login sends, in order: the 401 (its resource_metadata), the resource's RFC
# 9728 metadata, the facade's RFC 8414 metadata at the origin, registration, (the browser),
# the token request, and the MCP request again, now answered.
DISCOVERY = [
    ("POST", "/mcp", 401),
    ("GET", "/.well-known/oauth-protected-resource/mcp", 200),
    ("GET", "/.well-known/oauth-authorization-server", 200),
    ("POST", "/oauth2/register", 201),
    ("POST", "/oauth2/token", 200),
    ("POST", "/mcp", 200),
]


def assert_discovered_in_order(requests: list[SeenRequest], netloc: str) -> None:
    """The SDK's requests began with DISCOVERY, every one of them to `netloc`."""
    seen = [(request.method, urlsplit(request.url).path, request.status) for request in requests]
    assert seen[: len(DISCOVERY)] == DISCOVERY, seen
    assert all(urlsplit(request.url).netloc == netloc for request in requests)


def remember(*tokens: str | None) -> None:
    """This flow's tokens join the set the log-leak guard (tests/support/leaks.py) looks for."""
    MINTED_TOKENS.update(token for token in tokens if token)


async def mcp_session(
    resource: str,
    access_token: str,
    context: ssl.SSLContext,
    resolve: Mapping[str, str],
    seen: list[SeenRequest] | None = None,
) -> tuple[dict, dict]:
    """Another MCP session through the proxy with an access token: whoami, then echo.
    `seen` gets every HTTP exchange (the SDK's errors do not carry the HTTP status)."""
    transport = LoopbackTransport(resolve, verify=context, trust_env=False)
    if seen is not None:
        transport.seen = seen
    headers = {"Authorization": f"Bearer {access_token}"}
    async with (
        httpx2.AsyncClient(transport=transport, headers=headers, trust_env=False, timeout=30.0) as http_client,
        Client(streamable_http_client(resource, http_client=http_client)) as client,
    ):
        whoami = await client.call_tool("whoami", {})
        echoed = await client.call_tool("echo", {"text": "again"})
    return whoami.structured_content or {}, echoed.structured_content or {}


async def raw_tool_call(
    resource: str, context: ssl.SSLContext, resolve: Mapping[str, str], bearer: str | None
) -> httpx2.Response:
    """A `tools/call` of `whoami` as the SDK sends it (JSON-RPC POST, Mcp-Method and Mcp-Name
    headers), with `bearer` or without a token: the proxy's answer."""
    transport = LoopbackTransport(resolve, verify=context, trust_env=False)
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "whoami",
        **({"Authorization": f"Bearer {bearer}"} if bearer else {}),
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
    async with httpx2.AsyncClient(transport=transport, trust_env=False, timeout=30.0) as http:
        return await http.post(resource, json=body, headers=headers)
