"""What the through-proxy tests (nginx, Envoy, Traefik) share: the policies behind the
edge, the identity headers, and how to read what reached the app.

The policy stream has two OAuthPolicies on mcp.example.com: `/mcp` (the MCP server) and
`/outage`, whose issuer is down from the start (cold key cache: 503, never 401), and a
third for www.example.com, a public site the same authgate serves (every path anonymous).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tests.infra.jwks_server import JwksServer
from tests.infra.upstream import EchoUpstream
from tests.support.authgate import Authgate
from tests.support.leaks import MINTED_TOKENS, assert_clean_log

from authgate.policy.model import ASYMMETRIC_ALGORITHMS

HOST = "mcp.example.com"
RESOURCE = "https://mcp.example.com/mcp"
METADATA_URL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
OUTAGE_RESOURCE = "https://mcp.example.com/outage"
SITE_RESOURCE = "https://www.example.com/"  # another host the same authgate serves, all public
IDENTITY_HEADERS = ("x-auth-subject", "x-auth-roles", "x-auth-scopes", "x-auth-issuer", "x-auth-client-id")
# Every challenge offers Bearer then DPoP (RFC 9449 §7.1) in one field: one field because
# nginx's auth_request passes only the first WWW-Authenticate.
DPOP_CHALLENGE = (
    f'DPoP algs="{" ".join(sorted(ASYMMETRIC_ALGORITHMS))}", scope="mcp:read", resource_metadata="{METADATA_URL}"'
)
NO_TOKEN_CHALLENGE = f'Bearer scope="mcp:read", resource_metadata="{METADATA_URL}", {DPOP_CHALLENGE}'
INSUFFICIENT_SCOPE_CHALLENGE = (
    f'Bearer error="insufficient_scope", scope="mcp:read", resource_metadata="{METADATA_URL}", {DPOP_CHALLENGE}'
)
ADMIN_TOOL = {"Mcp-Method": "tools/call", "Mcp-Name": "admin_reset"}


def policies(issuer_url: str, down_issuer_url: str) -> str:
    return f"""\
apiVersion: authgate.dev/v1alpha1
kind: OAuthPolicy
metadata: {{name: mcp, namespace: default}}
spec:
  resource: {RESOURCE}
  issuers: [{{issuer: "{issuer_url}"}}]
  scopeRoles: [{{scope: "mcp:read", role: reader}}, {{scope: "mcp:admin", role: admin}}]
  rules:
    - {{pathPrefix: /mcp/health, anonymous: true}}
    - {{pathPrefix: /mcp, mcpMethods: [tools/call], mcpNames: ["admin_*"], requireRoles: [admin]}}
    - {{pathPrefix: /mcp, requireScopes: ["mcp:read"]}}
---
apiVersion: authgate.dev/v1alpha1
kind: OAuthPolicy
metadata: {{name: outage, namespace: default}}
spec:
  resource: {OUTAGE_RESOURCE}
  issuers: [{{issuer: "{down_issuer_url}"}}]
  rules:
    - {{pathPrefix: /outage, requireScopes: ["mcp:read"]}}
---
apiVersion: authgate.dev/v1alpha1
kind: OAuthPolicy
metadata: {{name: site, namespace: default}}
spec:
  resource: {SITE_RESOURCE}
  issuers: [{{issuer: "{issuer_url}"}}]
  rules:
    - {{pathPrefix: /, anonymous: true}}
"""


def values(echoed: dict, name: str) -> list[str]:
    """Every value of header `name` that reached the app, duplicates included."""
    return [value for key, value in echoed["raw_headers"] if key == name]


def forged_identity_headers() -> list[tuple[str, str]]:
    """What a client would send to impersonate someone: every identity header, the subject
    twice, plus underscore spellings that some app stacks read as the dashed names."""
    return [
        ("X-Auth-Subject", "mallory"),
        ("x-auth-subject", "eve"),
        ("X-Auth-Roles", "admin"),
        ("X-Auth-Scopes", "mcp:admin"),
        ("X-Auth-Issuer", "https://evil.example"),
        ("X-Auth-Client-Id", "forged-client"),
        ("X_Auth_Subject", "mallory"),
        ("X_Auth_Roles", "admin"),
    ]


def assert_no_underscore_copies(echoed: dict) -> None:
    underscored = [key for key, _ in echoed["raw_headers"] if key.replace("_", "-") in IDENTITY_HEADERS and "_" in key]
    assert underscored == [], f"client-sent identity headers reached the app: {underscored}"


_request_ids = itertools.count(1)


@contextlib.contextmanager
def down_issuer() -> Iterator[JwksServer]:
    """An issuer that is down before authgate ever fetched its keys."""
    with JwksServer([]) as server:
        server.mode = "down"
        yield server


@contextlib.contextmanager
def edge_authgate(directory: Path, issuer_url: str, down_issuer_url: str, args: list[str]) -> Iterator[Authgate]:
    """`authgate serve` with the edge policies; at the end its log is checked for tokens."""
    instance = Authgate(directory, policies(issuer_url, down_issuer_url), args, name="authgate").start()
    try:
        yield instance
    finally:
        instance.stop()
    # The guard is only as good as the set the `mint` fixture fills: make sure it is that one.
    assert MINTED_TOKENS, "no token was minted: the leak check would check nothing"
    assert_clean_log(instance.log(), str(instance.process.log_path))


class Edge:
    """The client's view: requests to the proxy as mcp.example.com, plus what the app and
    authgate saw. With `send_request_id`, each request carries its own X-Request-Id (nginx
    and Traefik pass it on); otherwise the proxy's id is read back (Envoy at the edge
    replaces the client's). `name` is the proxy's (tests/support/proxy_cases.py PROXIES)."""

    def __init__(
        self,
        proxy: Any,
        client: httpx.Client,
        app: EchoUpstream,
        authgate: Authgate,
        send_request_id: bool = True,
        name: str = "",
    ) -> None:
        self.proxy, self.client, self.app, self.authgate = proxy, client, app, authgate
        self.send_request_id, self.name = send_request_id, name
        self.seen = len(app.requests)
        self.request_id = ""

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        token: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        host: str = HOST,
        raw_target: str | None = None,
        body: bytes | None = None,
    ) -> httpx.Response:
        """`raw_target` goes on the request line byte for byte (httpx would resolve dot-segments)."""
        sent = [("Host", host)]
        if self.send_request_id:
            self.request_id = f"edge-test-{next(_request_ids)}"
            sent.append(("X-Request-Id", self.request_id))
        if token is not None:
            sent.append(("Authorization", f"Bearer {token}"))
        sent.extend(headers or [])
        extensions = {"target": raw_target.encode()} if raw_target is not None else None
        return self.client.request(method, f"{self.proxy.url}{path}", headers=sent, content=body, extensions=extensions)

    def new_app_requests(self) -> list[dict]:
        return self.app.requests[self.seen :]

    def reached_app(self) -> dict:
        new = self.new_app_requests()
        assert len(new) == 1, f"expected exactly one request at the app, got {len(new)}"
        return new[0]

    def decision(self, response: httpx.Response | None = None) -> dict:
        """authgate's decision log line behind the last request (or `response`)."""
        if self.send_request_id:
            request_id = self.request_id
        elif response is not None and response.status_code == 200:
            request_id = self.reached_app()["headers"]["x-request-id"]
        else:
            assert response is not None
            request_id = response.headers["x-request-id"]
        found = [d for d in self.authgate.decisions() if d.get("request_id") == request_id]
        assert len(found) == 1, f"expected one decision for {request_id}, got {found}"
        return found[0]
