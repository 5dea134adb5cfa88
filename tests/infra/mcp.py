"""MCP servers and clients for end-to-end tests: the example server as a process, and the MCP
Python SDK's own OAuth client (`mcp` 2.x, `mcp.client.auth.OAuthClientProvider`) logging in.

    with McpServer(tmp_path, allowed_hosts=["mcp.example.test"]) as app:   # examples/mcp-server
        ...  # put it behind the proxy: app.port

    with LoopbackCallback() as callback:
        login = await oauth_login(
            "https://mcp.example.test:8443/mcp",
            verify=ca.ca_path,                          # or an ssl.SSLContext
            resolve={"mcp.example.test": "127.0.0.1"},  # like Chromium's --host-resolver-rules
            redirect_handler=drive_browser,             # async (authorization_url) -> None
            callback=callback,
        )
    login.tool_names, login.echo_text, login.tokens, login.client_info, login.requests

The SDK does discovery, dynamic client registration, PKCE and the token request itself; the
test only opens the authorization URL in a browser (`redirect_handler`) and catches the
redirect back (`LoopbackCallback`, an RFC 8252 loopback listener). Written by hand here: the
callback listener (the SDK leaves it to the application) and a transport that maps host names
to loopback (httpx2 has no resolver hook; FIELD-NOTES: Python clients need one).

What the SDK (mcp 2.3.0, `OAuthClientProvider._auth_flow`) does, in order, for a server URL
S = `https://mcp.example.test/mcp` (origin O = `https://mcp.example.test`):

1. Sends the MCP request (in `Client`'s default "auto" mode the first one is a POST S with
   JSON-RPC `server/discover`) without a token. Only a 401, or a 403 whose WWW-Authenticate
   has `error="insufficient_scope"` (step-up), starts the flow; anything else is returned.
2. RFC 9728 protected-resource metadata (PRM), first 200 with a valid body wins, a non-200 or
   an invalid body goes on to the next URL:
   a. the `resource_metadata` URL from the 401's WWW-Authenticate, if present;
   b. `O/.well-known/oauth-protected-resource/mcp` (S's path appended; only if S has a path);
   c. `O/.well-known/oauth-protected-resource`.
   When none answered but one was a 5xx or 429, the flow fails. When none answered at all it
   takes the legacy 2025-03-26 path: the authorization server (AS) is O itself.
   PRM must have `resource` and a non-empty `authorization_servers`; `resource` must have S's
   scheme, host and port (the port too!) and a path that is S's path or a parent of it
   (`check_resource_allowed`), else the flow fails. The AS is `authorization_servers[0]`.
3. RFC 8414 AS metadata, for the AS URL A:
   - A with a path P (`https://h/oauth2`): `https://h/.well-known/oauth-authorization-server/oauth2`,
     `https://h/.well-known/openid-configuration/oauth2`, `https://h/oauth2/.well-known/openid-configuration`;
   - A without a path: `A/.well-known/oauth-authorization-server`, `A/.well-known/openid-configuration`;
   - legacy (no PRM): only `O/.well-known/oauth-authorization-server`.
   A 200 with a valid body is taken; a 3xx/4xx or an invalid body tries the next URL; a 5xx
   stops the search and the flow goes on *without* metadata, falling back to O/register,
   O/authorize and O/token. All metadata requests carry `MCP-Protocol-Version: 2026-07-28`.
   Required fields: `issuer`, `authorization_endpoint`, `token_endpoint` (http or https URLs:
   https is not enforced). `issuer` must equal A as given in PRM, compared as strings after
   pydantic's URL normalisation (lower-case host, default port dropped, an empty path kept
   empty): `https://h` and `https://h/` differ (only the legacy path forgives that slash).
   Used when present: `registration_endpoint` (else O/register), `scopes_supported`,
   `client_id_metadata_document_supported`, `authorization_response_iss_parameter_supported`.
   Not checked: `code_challenge_methods_supported` (S256 is always sent),
   `grant_types_supported`, `token_endpoint_auth_methods_supported`, `response_types_supported`.
4. Scope to request: the 401's WWW-Authenticate `scope`, else PRM `scopes_supported` (joined),
   else AS `scopes_supported`, else none (no `scope` parameter). `offline_access` is appended
   when the AS lists it in `scopes_supported` (the client's grant_types include refresh_token by
   default), and then `prompt=consent` is added to the authorization request. On a step-up 403
   the scope becomes the union of what was asked before, what was granted and the new scope.
5. Client registration, unless the storage already holds client info (registered for the same
   issuer): with a `client_metadata_url` and AS `client_id_metadata_document_supported: true`,
   that URL is the client_id (CIMD, no request). Otherwise RFC 7591 DCR: POST JSON to
   `registration_endpoint` with `redirect_uris`, `grant_types` ["authorization_code",
   "refresh_token"], `response_types` ["code"], `application_type` "native", `scope` (step 4),
   `client_name`, and `token_endpoint_auth_method` only if the client set one (absent means
   client_secret_basic in RFC 7591; `oauth_login` sets "none"). The answer must be 200 or 201
   with a `client_id`; a `token_endpoint_auth_method` other than none / client_secret_post /
   client_secret_basic, or a secret method without `client_secret`, fails the flow.
6. Authorization request (the browser): `authorization_endpoint?response_type=code&client_id&
   redirect_uri` (the first registered one) `&state&code_challenge&code_challenge_method=S256
   &resource&scope[&prompt=consent]`. `resource` (RFC 8707) is sent whenever PRM was found
   (or the protocol version is 2025-06-18 or later): S lower-cased without fragment, or PRM's
   `resource` when that is a parent of S. The callback must bring back the same `state`; an
   `iss` (RFC 9207) in it must equal the metadata `issuer` exactly, and is required when the
   AS advertised `authorization_response_iss_parameter_supported`.
7. Token request: POST form to `token_endpoint`: grant_type=authorization_code, code,
   redirect_uri, client_id, code_verifier, resource; client_secret_basic sends an
   Authorization header, client_secret_post the secret in the form, "none" nothing. The answer
   must be 200 or 201 JSON with `access_token` and `token_type` "Bearer" (any case; "DPoP"
   fails); `expires_in`, `scope` and `refresh_token` are optional (an absent scope is recorded
   as the requested one).
8. The original request is sent again with `Authorization: Bearer <access_token>`. Later, an
   expired token (by `expires_in`) with a refresh token is refreshed first (grant_type=
   refresh_token, client_id, resource). The SDK follows redirects of its own requests only
   within the same origin (at most 5) and stops its request timeout while waiting on the user.

The MCP requests themselves (protocol 2026-07-28 with the example server) are POSTs to S with
`MCP-Protocol-Version: 2026-07-28` and `Mcp-Method: server/discover`, then `tools/list`, then
`tools/call` plus `Mcp-Name: echo`: a policy restricting MCP methods must let `server/discover`
through (an older server answers it with an error and the client falls back to `initialize`).
"""

from __future__ import annotations

import html
import os
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider, OAuthFlowError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.types import CallToolResult, TextContent
from tests.infra.processes import LinePrefix, Process

EXAMPLE_SERVER = Path(__file__).resolve().parents[2] / "examples" / "mcp-server" / "server.py"


class McpServer:
    """examples/mcp-server/server.py as a process on `host` and a port it picks itself (no race).

    Attributes (after `start()`): `port`, `url` (`http://127.0.0.1:<port>/mcp`), `process`.
    `allowed_hosts`: host names besides loopback that the proxy forwards in Host, each allowed
    with and without a port (nginx's `$host` has none; Envoy and Traefik keep the client's)."""

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        allowed_hosts: Iterable[str] = (),
        name: str = "mcp-server",
    ) -> None:
        self.host = host
        args: list[str] = [sys.executable, str(EXAMPLE_SERVER), "--host", host, "--port", "0"]
        for allowed in allowed_hosts:
            args += ["--allowed-host", allowed, "--allowed-host", f"{allowed}:*"]
        self.process = Process(name, args, log_dir=log_dir)
        self.port: int | None = None
        self.url: str | None = None

    def start(self, timeout: float = 30.0) -> McpServer:
        ready_line = self.process.start(LinePrefix("READY "), timeout=timeout).ready_info
        assert ready_line is not None
        self.url = ready_line.split(" ", 1)[1].strip()
        self.port = urlsplit(self.url).port
        return self

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> McpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class LoopbackCallback:
    """The OAuth client's redirect URI: an HTTP listener on 127.0.0.1 (RFC 8252 §7.3) that
    keeps the `code`, `state` and `iss` of the first request to `path` and answers a short page.

    Attributes: `redirect_uri`, `received` (query dicts of every request to `path`)."""

    def __init__(self, host: str = "127.0.0.1", path: str = "/callback") -> None:
        self.path = path
        self.received: list[dict[str, str]] = []
        self._arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != receiver.path:
                    self._answer(404, "Not found.")
                    return
                query = {name: values[0] for name, values in parse_qs(url.query).items()}
                receiver.received.append(query)
                receiver._arrived.set()
                if "error" in query:
                    self._answer(200, f"Authorization failed: {query['error']}.")
                else:
                    self._answer(200, "Authorization complete. You can close this window.")

            def _answer(self, status: int, text: str) -> None:
                body = f"<!doctype html><title>authgate test client</title><p id=result>{html.escape(text)}</p>"
                encoded = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(encoded)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(encoded)

            def log_message(self, format: str, *args: Any) -> None:  # the query holds the code
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self.redirect_uri = f"http://{host}:{self._server.server_address[1]}{path}"
        self._thread: threading.Thread | None = None

    def start(self) -> LoopbackCallback:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> LoopbackCallback:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def wait(self, seconds: float = 60.0) -> AuthorizationCodeResult:
        """The first redirect's parameters; OAuthFlowError for an `error` redirect or none within `seconds`."""
        deadline = time.monotonic() + seconds
        while not self._arrived.is_set():
            if time.monotonic() > deadline:
                raise OAuthFlowError(f"no redirect reached {self.redirect_uri} within {seconds:.0f}s")
            await anyio.sleep(0.05)
        query = self.received[0]
        if "error" in query:
            description = query.get("error_description", "")
            raise OAuthFlowError(f"authorization failed: {query['error']} {description}".strip())
        return AuthorizationCodeResult(code=query.get("code", ""), state=query.get("state"), iss=query.get("iss"))


@dataclass
class InMemoryTokenStorage:
    """The SDK's `TokenStorage` protocol, in memory: what the client holds after the login."""

    tokens: OAuthToken | None = None
    client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@dataclass(frozen=True)
class SeenRequest:
    """One HTTP exchange the client made: method, URL (query included), response status."""

    method: str
    url: str
    status: int


class LoopbackTransport(httpx2.AsyncBaseTransport):
    """httpx2's transport, connecting the host names in `resolve` to the given addresses (TLS
    still verifies the name: SNI and Host stay the name), and logging each exchange in `seen`."""

    def __init__(self, resolve: Mapping[str, str] | None = None, **transport_options: Any) -> None:
        self.resolve = {name.lower(): address for name, address in (resolve or {}).items()}
        self.seen: list[SeenRequest] = []
        self._transport = httpx2.AsyncHTTPTransport(**transport_options)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        outgoing = request
        address = self.resolve.get(request.url.host)
        if address is not None:
            # A copy: the client hands `request` (its URL with the name) back on the response.
            outgoing = httpx2.Request(
                request.method,
                request.url.copy_with(host=address),
                headers=request.headers,  # Host: the name, as the client set it
                stream=request.stream,
                extensions={**request.extensions, "sni_hostname": request.url.host},
            )
        response = await self._transport.handle_async_request(outgoing)
        self.seen.append(SeenRequest(request.method, str(request.url), response.status_code))
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


@dataclass(frozen=True)
class OAuthLogin:
    """What the SDK's OAuth client did and saw.

    `tool_names`: from tools/list; `echo_result` / `echo_text`: the echo tool's answer;
    `tokens`, `client_info`: what the token storage holds at the end (the DCR/CIMD record);
    `authorization_url`: what `redirect_handler` was given; `callback`: what came back;
    `requests`: every HTTP exchange in order (discovery, registration, token, MCP)."""

    tool_names: list[str]
    echo_result: CallToolResult
    tokens: OAuthToken | None
    client_info: OAuthClientInformationFull | None
    authorization_url: str | None
    callback: AuthorizationCodeResult | None
    requests: list[SeenRequest] = field(default_factory=list)

    @property
    def echo_text(self) -> str:
        return "".join(block.text for block in self.echo_result.content if isinstance(block, TextContent))


async def oauth_login(
    server_url: str,
    *,
    verify: ssl.SSLContext | str | os.PathLike[str] | bool,
    redirect_handler: Callable[[str], Awaitable[None]],
    callback: LoopbackCallback,
    resolve: Mapping[str, str] | None = None,
    echo_text: str = "hello through authgate",
    client_name: str = "authgate e2e test client",
    token_endpoint_auth_method: str | None = "none",
    client_metadata_url: str | None = None,
    storage: InMemoryTokenStorage | None = None,
    time_limit: float = 120.0,
) -> OAuthLogin:
    """Connect to `server_url` with the SDK's streamable HTTP client and OAuthClientProvider,
    log in (discovery, registration, browser via `redirect_handler`, code from `callback`,
    token), list the tools and call `echo(echo_text)`.

    `verify`: a CA PEM path (e.g. `TestCA.ca_path`), an SSLContext, or a bool. `resolve`: host
    name -> address for the Python side. `token_endpoint_auth_method`: what the client asks
    for at registration (None: leave it out, as the SDK does by default). `storage`: pass one
    holding tokens/client info to test reuse. The whole call is bounded by `time_limit` seconds
    (the SDK stops its own request timeout while a person is at the browser)."""
    if isinstance(verify, str | os.PathLike):
        verify = ssl.create_default_context(cafile=os.fspath(verify))
    storage = storage if storage is not None else InMemoryTokenStorage()
    authorization_urls: list[str] = []
    callbacks: list[AuthorizationCodeResult] = []

    async def on_redirect(authorization_url: str) -> None:
        authorization_urls.append(authorization_url)
        await redirect_handler(authorization_url)

    async def on_callback() -> AuthorizationCodeResult:
        result = await callback.wait(time_limit)
        callbacks.append(result)
        return result

    client_metadata = OAuthClientMetadata.model_validate(
        {
            "client_name": client_name,
            "redirect_uris": [callback.redirect_uri],
            "token_endpoint_auth_method": token_endpoint_auth_method,
        }
    )
    provider = OAuthClientProvider(
        server_url=server_url,
        client_metadata=client_metadata,
        storage=storage,
        redirect_handler=on_redirect,
        callback_handler=on_callback,
        client_metadata_url=client_metadata_url,
    )
    transport = LoopbackTransport(resolve, verify=verify, trust_env=False)
    try:
        with anyio.fail_after(time_limit):
            async with (
                httpx2.AsyncClient(
                    auth=provider,
                    transport=transport,
                    trust_env=False,
                    timeout=httpx2.Timeout(30.0, read=60.0),
                ) as http_client,
                Client(streamable_http_client(server_url, http_client=http_client)) as client,
            ):
                tools = await client.list_tools()
                echo_result = await client.call_tool("echo", {"text": echo_text})
    except BaseExceptionGroup as group:
        # The transport's task group wraps the one real error (e.g. OAuthFlowError): raise that
        # one, so tests can `pytest.raises(OAuthFlowError, match=...)`.
        sole = _sole_error(group)
        if sole is None:
            raise
        raise sole from group
    return OAuthLogin(
        tool_names=[tool.name for tool in tools.tools],
        echo_result=echo_result,
        tokens=storage.tokens,
        client_info=storage.client_info,
        authorization_url=authorization_urls[-1] if authorization_urls else None,
        callback=callbacks[-1] if callbacks else None,
        requests=list(transport.seen),
    )


def _sole_error(group: BaseExceptionGroup) -> BaseException | None:
    """The only leaf exception of a (nested) group, or None when there are several."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    return leaves[0] if len(leaves) == 1 else None
