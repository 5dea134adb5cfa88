"""`authgate demo` and `authgate token`: a local issuer to try authgate with, no IdP needed.

The demo issuer's ES256 key lives in `.local/` (created on first use, mode 0600) and
is served as a JWKS over http on 127.0.0.1, which the demo's egress settings allow.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from dataclasses import replace
from pathlib import Path

from jwcrypto import jwk, jwt
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from authgate.server.config import AdminAccess, ServiceConfig

DEMO_RESOURCE = "https://mcp.example.com/mcp"
DEMO_HOST = "mcp.example.com"


def state_dir() -> Path:
    return Path(os.environ.get("AUTHGATE_LOCAL_DIR", ".local"))


def _key_file() -> Path:
    return state_dir() / "demo-issuer.json"


def preset(config: ServiceConfig, issuer: str) -> ServiceConfig:
    """`authgate demo`: `config` (its ports and flags) with the demo policy, an admin token
    of its own, and plain http allowed to the demo issuer on 127.0.0.1 only."""
    policy_file = state_dir() / "demo-policy.yaml"
    policy_file.write_text(demo_policy(issuer))
    token_file = state_dir() / "admin-token"
    if not token_file.exists():
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(32))
    egress = replace(config.settings.egress, insecure_http=True, allow=(*config.settings.egress.allow, "127.0.0.1"))
    return replace(
        config,
        settings=replace(config.settings, egress=egress),
        policy_files=(str(policy_file),),
        bootstrap_snapshot=None,
        sealing_keys=None,
        admin=AdminAccess(token_file=str(token_file)),
    )


def load_or_create_issuer(issuer_url: str | None = None) -> tuple[jwk.JWK, str]:
    """The demo signing key and issuer URL, created on first use."""
    path = _key_file()
    if path.exists():
        saved = json.loads(path.read_text())
        key = jwk.JWK(**saved["key"])
        if issuer_url is None or issuer_url == saved["issuer"]:
            return key, saved["issuer"]
    else:
        key = jwk.JWK.generate(kty="EC", crv="P-256", kid=uuid.uuid4().hex[:16], alg="ES256", use="sig")
    issuer = issuer_url or "http://127.0.0.1:9400"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump({"issuer": issuer, "key": json.loads(key.export_private())}, file)
    return key, issuer


def sign_token(
    key: jwk.JWK,
    issuer: str,
    subject: str,
    scope: str = "",
    audience: str = DEMO_RESOURCE,
    ttl: int = 3600,
    extra_claims: dict | None = None,
) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_hex(8),
        "client_id": "demo-client",
        **({"scope": scope} if scope else {}),
        **(extra_claims or {}),
    }
    token = jwt.JWT(header={"alg": "ES256", "kid": key.key_id, "typ": "at+jwt"}, claims=claims)
    token.make_signed_token(key)
    return token.serialize()


def issuer_app(key: jwk.JWK, issuer: str) -> Starlette:
    public = json.loads(key.export_public())

    async def discovery(request) -> JSONResponse:
        return JSONResponse({"issuer": issuer, "jwks_uri": f"{issuer}/jwks.json"})

    async def jwks(request) -> JSONResponse:
        return JSONResponse({"keys": [public]})

    return Starlette(routes=[Route("/.well-known/openid-configuration", discovery), Route("/jwks.json", jwks)])


def demo_policy(issuer: str) -> str:
    return f"""\
apiVersion: authgate.dev/v1alpha1
kind: OAuthPolicy
metadata: {{name: demo, namespace: default}}
spec:
  resource: {DEMO_RESOURCE}
  issuers:
    - issuer: {issuer}
      requireTyp: at+jwt
  scopeRoles:
    - {{scope: "mcp:read", role: reader}}
    - {{scope: "mcp:admin", role: admin}}
  rules:
    - {{pathPrefix: /mcp/health, anonymous: true}}
    - pathPrefix: /mcp
      mcpMethods: [tools/call]
      mcpNames: ["admin_*"]
      requireRoles: [admin]
    - pathPrefix: /mcp
      requireScopes: ["mcp:read"]
"""


def curl_lines(check_port: int, public_port: int) -> str:
    check = f"http://127.0.0.1:{check_port}/ext-authz/nginx"
    original = f"-H 'X-Original-URL: {DEMO_RESOURCE}' -H 'X-Original-Method: POST'"
    return f"""
authgate demo is running. Try it from another shell:

  TOKEN=$(.venv/bin/authgate token --sub alice --scope mcp:read)

  # allowed: 200 with X-Auth-Subject, X-Auth-Roles, X-Auth-Scopes
  curl -i {check} {original} -H "Authorization: Bearer $TOKEN"

  # no token: 401 with a WWW-Authenticate challenge naming the resource metadata
  curl -i {check} {original}

  # a tool that needs the admin role: 403 access_denied
  curl -i {check} {original} -H 'Mcp-Method: tools/call' -H 'Mcp-Name: admin_reset' -H "Authorization: Bearer $TOKEN"

  # the RFC 9728 metadata a client discovers
  curl -s http://127.0.0.1:{public_port}/.well-known/oauth-protected-resource/mcp -H 'Host: {DEMO_HOST}'

  # why a request is allowed or denied, step by step
  .venv/bin/authgate token --sub alice | .venv/bin/authgate explain --policy .local/demo-policy.yaml \\
      --insecure-http --egress-allow 127.0.0.1 --url {DEMO_RESOURCE}

Stop with Ctrl-C.
"""
