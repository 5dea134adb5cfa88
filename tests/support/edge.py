"""What the through-proxy tests (nginx, Envoy, Traefik) share: the policies behind the
edge, the identity headers, and how to read what reached the app.

The policy stream has two OAuthPolicies on mcp.example.com: `/mcp` (the MCP server) and
`/outage`, whose issuer is down from the start (cold key cache: 503, never 401), and a
third for www.example.com, a public site the same authgate serves (every path anonymous).
"""

from __future__ import annotations

HOST = "mcp.example.com"
RESOURCE = "https://mcp.example.com/mcp"
METADATA_URL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
OUTAGE_RESOURCE = "https://mcp.example.com/outage"
SITE_RESOURCE = "https://www.example.com/"  # another host the same authgate serves, all public
IDENTITY_HEADERS = ("x-auth-subject", "x-auth-roles", "x-auth-scopes", "x-auth-issuer", "x-auth-client-id")
NO_TOKEN_CHALLENGE = f'Bearer scope="mcp:read", resource_metadata="{METADATA_URL}"'
INSUFFICIENT_SCOPE_CHALLENGE = (
    f'Bearer error="insufficient_scope", scope="mcp:read", resource_metadata="{METADATA_URL}"'
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
