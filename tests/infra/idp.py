"""The test identity provider: npm `oidc-provider` run by node from `hack/idp/`.

A real, certified OpenID Provider, so authgate is tested against real discovery,
JWKS, JWT access tokens (RFC 9068) in RS256, ES256 and EdDSA, PKCE and
client_credentials. Login and consent are automated by `hack/idp/server.mjs`.

A pytest fixture would use it like this:

    @pytest.fixture(scope="session")
    def idp(tmp_path_factory):
        with OidcProvider(tmp_path_factory.mktemp("idp")) as provider:
            yield provider

    def test_x(idp):
        token = idp.client_credentials_token(
            SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret,
            resource=RESOURCES_BY_ALG["ES256"], scope="mcp:read")

Over https: `OidcProvider(dir, ca=TestCA(dir / "pki"))` serves
`https://localhost:<port>` with a certificate for localhost and 127.0.0.1.

Token exchange (RFC 8693), on by default for `EXCHANGE_CLIENT` and
`MTLS_EXCHANGE_CLIENT`:

    body = idp.exchange(subject, EXCHANGE_CLIENT.client_id, EXCHANGE_CLIENT.client_secret,
                        audience=EXCHANGE_AUDIENCE, scope="downstream:read")

`OidcProvider(dir, ca=ca, mtls=True)` adds an RFC 8705 listener
(`idp.mtls_token_endpoint`) where `MTLS_EXCHANGE_CLIENT` authenticates with a
certificate from `ca.issue_client_cert(..., common_name=MTLS_EXCHANGE_CN)`.
`test_controls=True` enables `set_exchange_mode()` / `exchange_count()`.

Sender-constrained tokens (RFC 9449, RFC 8705 §3): `dpop_algorithms=[...]` sets the proof
algorithms the token endpoint accepts (oidc-provider's default is ES256 and EdDSA), and
`dpop_token(DPOP_CLIENT, resource, proof=...)` sends a DPoP proof with the token request:
the access token then carries `cnf.jkt`. `OidcProvider(dir, ca=ca, mtls=True,
certificate_bound=True)` adds `BOUND_CLIENT` (tls_client_auth, CN=`BOUND_CLIENT_CN`);
`certificate_bound_token(cert, resource)` asks the mTLS listener with that certificate
and gets a token carrying `cnf.x5t#S256` of it.
Opaque tokens: `client_credentials_token(..., resource=OPAQUE_RESOURCE)`, then
`introspect()` and `revoke()`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from tests.infra.keys import SigningKey
from tests.infra.ports import free_port
from tests.infra.processes import LinePrefix, Process
from tests.infra.tls import IssuedCert, TestCA

IDP_DIR = Path(__file__).resolve().parents[2] / "hack" / "idp"
INSTALL_HINT = "run `make tools` (or `npm ci --prefix hack/idp`)"

# One resource server per signing algorithm; tokens for a resource carry it as `aud`.
RESOURCES_BY_ALG: dict[str, str] = {
    "RS256": "https://mcp.example.com/mcp",
    "ES256": "https://es256.example.com/mcp",
    "EdDSA": "https://eddsa.example.com/mcp",
}
RESOURCE_SCOPES = "mcp:read mcp:write"
# A resource whose access tokens are opaque (introspect them, RFC 7662).
OPAQUE_RESOURCE = "https://opaque.example.com/api"

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
# The audience and scopes exchanged tokens are asked for by default.
EXCHANGE_AUDIENCE = "https://downstream.example.com/api"
EXCHANGE_SCOPES = "downstream:read downstream:write mcp:read mcp:write"
MTLS_EXCHANGE_CN = "authgate-exchange"


@dataclass(frozen=True)
class Client:
    """A registered client; `client_secret` None means a public client (PKCE only)."""

    client_id: str
    client_secret: str | None = None
    redirect_uri: str | None = None


# client_credentials clients; the admin one's tokens carry admin role claims.
SERVICE_CLIENT = Client("service", "service-secret")
ADMIN_SERVICE_CLIENT = Client("admin-service", "admin-service-secret")
ADMIN_CLAIMS = {"realm_access": {"roles": ["admin"]}, "groups": ["mcp-admins"]}
# authorization_code + PKCE clients.
PUBLIC_CLIENT = Client("public-app", None, "http://127.0.0.1:8765/callback")
CONFIDENTIAL_CLIENT = Client("web-app", "web-app-secret", "https://app.example.com/callback")
# Token exchange clients (RFC 8693): client_secret_basic, and tls_client_auth
# (RFC 8705, certificate subject CN=authgate-exchange, no secret).
EXCHANGE_CLIENT = Client("authgate", "authgate-secret")
MTLS_EXCHANGE_CLIENT = Client("authgate-mtls")
# Sender-constrained tokens: a client whose tokens are always DPoP-bound (the IdP refuses
# its token requests without a proof), and one authenticating with a certificate
# (tls_client_auth, CN=bound-service) whose tokens are bound to that certificate.
DPOP_CLIENT = Client("dpop-service", "dpop-service-secret")
BOUND_CLIENT = Client("bound-service")
BOUND_CLIENT_CN = "bound-service"

DEFAULT_USER: dict[str, Any] = {
    "sub": "alice",
    "claims": {
        "email": "alice@example.com",
        "realm_access": {"roles": ["reader"]},
        "groups": ["mcp-users"],
    },
}


class IdpError(RuntimeError):
    """The identity provider is not installed, or refused a request."""


def default_clients() -> list[dict[str, Any]]:
    """oidc-provider client metadata for the clients above; extend it for more."""
    return [
        {
            "client_id": SERVICE_CLIENT.client_id,
            "client_secret": SERVICE_CLIENT.client_secret,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
        },
        {
            "client_id": ADMIN_SERVICE_CLIENT.client_id,
            "client_secret": ADMIN_SERVICE_CLIENT.client_secret,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "extra_token_claims": ADMIN_CLAIMS,
        },
        {
            "client_id": PUBLIC_CLIENT.client_id,
            "application_type": "native",  # loopback http redirect (RFC 8252)
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": [PUBLIC_CLIENT.redirect_uri],
        },
        {
            "client_id": CONFIDENTIAL_CLIENT.client_id,
            "client_secret": CONFIDENTIAL_CLIENT.client_secret,
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "response_types": ["code"],
            "redirect_uris": [CONFIDENTIAL_CLIENT.redirect_uri],
        },
        {
            "client_id": EXCHANGE_CLIENT.client_id,
            "client_secret": EXCHANGE_CLIENT.client_secret,
            "grant_types": [TOKEN_EXCHANGE_GRANT, "client_credentials"],
            "response_types": [],
            "redirect_uris": [],
        },
        {
            "client_id": DPOP_CLIENT.client_id,
            "client_secret": DPOP_CLIENT.client_secret,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "dpop_bound_access_tokens": True,
        },
    ]


def bound_client() -> dict[str, Any]:
    """Metadata of `BOUND_CLIENT`; added by `OidcProvider(mtls=True, certificate_bound=True)`."""
    return {
        "client_id": BOUND_CLIENT.client_id,
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": f"CN={BOUND_CLIENT_CN}",
        "tls_client_certificate_bound_access_tokens": True,
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
    }


def mtls_exchange_client() -> dict[str, Any]:
    """Metadata of `MTLS_EXCHANGE_CLIENT`; added by `OidcProvider(mtls=True)`."""
    return {
        "client_id": MTLS_EXCHANGE_CLIENT.client_id,
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": f"CN={MTLS_EXCHANGE_CN}",
        "grant_types": [TOKEN_EXCHANGE_GRANT],
        "response_types": [],
        "redirect_uris": [],
    }


def default_exchange() -> dict[str, Any]:
    """The `exchange` config of server.mjs: who may exchange, for which scopes."""
    return {
        "clients": [EXCHANGE_CLIENT.client_id, MTLS_EXCHANGE_CLIENT.client_id],
        "scopes": EXCHANGE_SCOPES,
        "ttl": 300,
        "mode": "ok",
        "delayMs": 0,
    }


def default_resources() -> dict[str, dict[str, Any]]:
    resources: dict[str, dict[str, Any]] = {
        resource: {"scope": RESOURCE_SCOPES, "alg": alg, "accessTokenTTL": 600}
        for alg, resource in RESOURCES_BY_ALG.items()
    }
    resources[OPAQUE_RESOURCE] = {"scope": RESOURCE_SCOPES, "accessTokenTTL": 600, "format": "opaque"}
    return resources


def install_problem(node: str = "node") -> str | None:
    """Why the IdP cannot run here (node or node_modules missing), or None."""
    if shutil.which(node) is None:
        return f"`{node}` is not on PATH: install Node.js 20+"
    if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        return f"{IDP_DIR}/node_modules is missing: {INSTALL_HINT}"
    return None


class OidcProvider:
    """A running oidc-provider.

    Constructor: `work_dir` (config, log, certificates), and optional `ca` (serve
    https), `clients` (default `default_clients()`), `resources` (default
    `default_resources()`), `user` (default `DEFAULT_USER`), `extra_token_claims`
    (merged into every access token), `default_resource`, `jwks_path` (private
    JWKS to sign with instead of fresh keys), `port`, `node`, `exchange` (token
    exchange config, default `default_exchange()`),
    `mtls` (needs `ca`: RFC 8705 listener on `mtls_port`, adds
    `MTLS_EXCHANGE_CLIENT`), `certificate_bound` (with `mtls`: certificate-bound tokens,
    adds `BOUND_CLIENT`), `dpop_algorithms` (DPoP proof algorithms of the token endpoint),
    `test_controls` (runtime exchange modes, counter).

    After `start()` (or `with`): `issuer`, `port`, `discovery`, `jwks_uri`,
    `token_endpoint`, `mtls_token_endpoint`, `introspection_endpoint`,
    `revocation_endpoint`, `authorization_endpoint`, `verify` (for httpx), `process`.
    """

    def __init__(
        self,
        work_dir: str | os.PathLike[str],
        *,
        ca: TestCA | None = None,
        clients: Sequence[Mapping[str, Any]] | None = None,
        resources: Mapping[str, Mapping[str, Any]] | None = None,
        user: Mapping[str, Any] | None = None,
        extra_token_claims: Mapping[str, Any] | None = None,
        default_resource: str | None = None,
        jwks_path: str | os.PathLike[str] | None = None,
        port: int | None = None,
        node: str = "node",
        exchange: Mapping[str, Any] | None = None,
        mtls: bool = False,
        mtls_port: int | None = None,
        certificate_bound: bool = False,
        dpop_algorithms: Sequence[str] | None = None,
        test_controls: bool = False,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.ca = ca
        self.port = port or free_port()
        self.node = node
        scheme_host = "https://localhost" if ca else "http://127.0.0.1"
        self.issuer = f"{scheme_host}:{self.port}"
        self.config: dict[str, Any] = {
            "issuer": self.issuer,
            "host": "127.0.0.1",
            "port": self.port,
            "clients": [dict(c) for c in (default_clients() if clients is None else clients)],
            "resources": {k: dict(v) for k, v in (resources or default_resources()).items()},
            "user": dict(user or DEFAULT_USER),
            "extraTokenClaims": dict(extra_token_claims or {}),
        }
        if default_resource:
            self.config["defaultResource"] = default_resource
        self.config["jwksPath"] = os.fspath(jwks_path or self._fresh_jwks())
        self.config["exchange"] = dict(default_exchange() if exchange is None else exchange)
        if test_controls:
            self.config["testControls"] = True
        if dpop_algorithms is not None:
            self.config["dpop"] = {"algorithms": list(dpop_algorithms)}
        if ca:
            server = ca.issue_server_cert("idp", dns_names=["localhost"], ip_addresses=["127.0.0.1"])
            self.config["tls"] = {"cert": os.fspath(server.cert), "key": os.fspath(server.key)}
        self.mtls_port: int | None = None
        if mtls:
            if ca is None:
                raise ValueError("mtls=True needs a TestCA (ca=...)")
            self.mtls_port = mtls_port or free_port()
            self.config["mtls"] = {
                "port": self.mtls_port,
                "host": "127.0.0.1",
                "cert": os.fspath(server.cert),
                "key": os.fspath(server.key),
                "ca": os.fspath(ca.ca_path),
            }
            ids = {c["client_id"] for c in self.config["clients"]}
            if MTLS_EXCHANGE_CLIENT.client_id not in ids:
                self.config["clients"].append(mtls_exchange_client())
            if certificate_bound:
                self.config["mtls"]["certificateBoundAccessTokens"] = True
                if BOUND_CLIENT.client_id not in ids:
                    self.config["clients"].append(bound_client())
        elif certificate_bound:
            raise ValueError("certificate_bound=True needs mtls=True")
        # What httpx needs to trust this IdP.
        self.verify: ssl.SSLContext | bool = ca.ssl_context() if ca else True
        self.config_path = self.work_dir / "idp-config.json"
        self.process: Process | None = None
        self.discovery: dict[str, Any] = {}

    def _fresh_jwks(self) -> Path:
        """Private RS256, ES256 and EdDSA signing keys for this run (server.mjs does not
        generate keys: see its jwksPath note)."""
        keys = []
        for alg in ("RS256", "ES256", "EdDSA"):
            key = SigningKey.generate(alg)
            keys.append({**json.loads(key.key.export_private()), "alg": alg, "use": "sig"})
        path = self.work_dir / "jwks.json"
        path.write_text(json.dumps({"keys": keys}))
        return path

    @property
    def jwks_uri(self) -> str:
        return self.discovery["jwks_uri"]

    @property
    def token_endpoint(self) -> str:
        return self.discovery["token_endpoint"]

    @property
    def authorization_endpoint(self) -> str:
        return self.discovery["authorization_endpoint"]

    @property
    def mtls_token_endpoint(self) -> str:
        """RFC 8705 alias of the token endpoint (client certificates); needs mtls=True."""
        aliases = self.discovery.get("mtls_endpoint_aliases") or {}
        if "token_endpoint" not in aliases:
            raise IdpError("this IdP has no mTLS listener: start it with mtls=True (and a ca)")
        return aliases["token_endpoint"]

    @property
    def introspection_endpoint(self) -> str:
        return self.discovery["introspection_endpoint"]

    @property
    def revocation_endpoint(self) -> str:
        return self.discovery["revocation_endpoint"]

    def start(self, timeout: float = 90.0) -> OidcProvider:
        problem = install_problem(self.node)
        if problem:
            raise IdpError(problem)
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self.process = Process(
            "oidc-provider",
            [self.node, IDP_DIR / "server.mjs", self.config_path],
            log_dir=self.work_dir,
            cwd=IDP_DIR,
        )
        self.process.start(LinePrefix("READY "), timeout=timeout)
        with self.http_client() as client:
            response = client.get(f"{self.issuer}/.well-known/openid-configuration")
            response.raise_for_status()
            self.discovery = response.json()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def http_client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client that trusts this IdP; redirects are not followed and proxy
        environment variables are ignored (everything is on loopback)."""
        kwargs.setdefault("timeout", 10.0)
        kwargs.setdefault("trust_env", False)
        return httpx.Client(verify=self.verify, **kwargs)

    def jwks(self) -> dict[str, Any]:
        with self.http_client() as client:
            response = client.get(self.jwks_uri)
            response.raise_for_status()
            return response.json()

    def token_request(self, data: Mapping[str, str], *, client_id: str, client_secret: str | None) -> dict[str, Any]:
        """POST to the token endpoint (client_secret_basic, or client_id in the body
        for public clients); returns the JSON body, raises `IdpError` unless 200."""
        auth = (client_id, client_secret) if client_secret is not None else None
        form = dict(data) if auth else {**data, "client_id": client_id}
        with self.http_client() as client:
            response = client.post(self.token_endpoint, data=form, auth=auth)
        if response.status_code != 200:
            raise IdpError(f"token endpoint answered {response.status_code}: {response.text}")
        return response.json()

    def client_credentials_token(
        self, client_id: str, client_secret: str, resource: str, scope: str | None = None
    ) -> str:
        """An access token (a JWT for the configured resources) for `resource`."""
        data = {"grant_type": "client_credentials", "resource": resource}
        if scope:
            data["scope"] = scope
        body = self.token_request(data, client_id=client_id, client_secret=client_secret)
        return body["access_token"]

    def dpop_token(
        self,
        client: Client,
        resource: str,
        *,
        proof: Callable[[str, str, str | None], str],
        scope: str | None = None,
    ) -> dict[str, Any]:
        """client_credentials with a DPoP proof (RFC 9449 §5): `proof(htm, htu, nonce)`
        makes it for the token endpoint; a `use_dpop_nonce` answer is retried once with
        the IdP's nonce. Returns the token response (`token_type` DPoP)."""
        data = {"grant_type": "client_credentials", "resource": resource}
        if scope:
            data["scope"] = scope
        nonce: str | None = None
        with self.http_client() as http:
            for _ in range(2):
                headers = {"DPoP": proof("POST", self.token_endpoint, nonce)}
                response = http.post(
                    self.token_endpoint, data=data, auth=(client.client_id, client.client_secret or ""), headers=headers
                )
                if response.status_code == 400 and response.json().get("error") == "use_dpop_nonce":
                    nonce = response.headers["dpop-nonce"]
                    continue
                break
        if response.status_code != 200:
            raise IdpError(f"DPoP token request answered {response.status_code}: {response.text}")
        return response.json()

    def certificate_bound_token(
        self,
        cert: IssuedCert,
        resource: str,
        *,
        client: Client = BOUND_CLIENT,
        scope: str | None = None,
        proof: Callable[[str, str, str | None], str] | None = None,
    ) -> dict[str, Any]:
        """client_credentials at the mTLS listener (tls_client_auth with `cert`, RFC 8705
        §2); the access token is bound to `cert` (needs `certificate_bound=True`), and also
        to a DPoP key when `proof(htm, htu, nonce)` makes a proof for the request."""
        assert self.ca is not None, "certificate-bound tokens need the IdP's TestCA"
        data = {"grant_type": "client_credentials", "resource": resource, "client_id": client.client_id}
        if scope:
            data["scope"] = scope
        with httpx.Client(verify=self.ca.ssl_context(cert), timeout=10.0, trust_env=False) as http:
            headers = {"DPoP": proof("POST", self.mtls_token_endpoint, None)} if proof else {}
            response = http.post(self.mtls_token_endpoint, data=data, headers=headers)
        if response.status_code != 200:
            raise IdpError(f"mTLS token request answered {response.status_code}: {response.text}")
        return response.json()

    def authorization_code_flow(
        self,
        client: Client,
        *,
        resource: str,
        scope: str = "openid mcp:read",
        max_redirects: int = 10,
    ) -> dict[str, Any]:
        """Run authorization_code + PKCE (S256) through the automated login and
        consent, following redirects by hand; returns the token response."""
        assert client.redirect_uri, "an authorization_code client needs a redirect_uri"
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(16)
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uri,
            "scope": scope,
            "resource": resource,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        with self.http_client(follow_redirects=False) as http:
            response = http.get(self.authorization_endpoint, params=params)
            for _ in range(max_redirects):
                if not response.is_redirect:
                    raise IdpError(
                        f"authorization flow stopped at {response.request.url} with "
                        f"{response.status_code}: {response.text[:500]}"
                    )
                location = urljoin(str(response.request.url), response.headers["location"])
                if location.startswith(client.redirect_uri):
                    break
                response = http.get(location)
            else:
                raise IdpError(f"more than {max_redirects} redirects")
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        if "error" in query:
            raise IdpError(f"authorization failed: {query}")
        if query.get("state") != state or query.get("iss") != self.issuer:
            raise IdpError(f"unexpected authorization response: {query}")
        return self.token_request(
            {
                "grant_type": "authorization_code",
                "code": query["code"],
                "redirect_uri": client.redirect_uri,
                "code_verifier": verifier,
            },
            client_id=client.client_id,
            client_secret=client.client_secret,
        )

    # -- token exchange (RFC 8693), introspection (RFC 7662), revocation (RFC 7009)

    def exchange_request(
        self,
        subject_token: str,
        client_id: str,
        secret: str | None = None,
        cert: IssuedCert | None = None,
        *,
        audience: str | None = EXCHANGE_AUDIENCE,
        scope: str | None = None,
        resource: str | None = None,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
        requested_token_type: str | None = None,
        extra: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> httpx.Response:
        """The raw token exchange response. With `secret`: client_secret_basic at the
        token endpoint. Without: tls_client_auth at `mtls_token_endpoint`, presenting
        `cert` (None sends no certificate, client_id in the body)."""
        data = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": subject_token,
            "subject_token_type": subject_token_type,
        }
        for name, value in (
            ("audience", audience),
            ("scope", scope),
            ("resource", resource),
            ("requested_token_type", requested_token_type),
        ):
            if value is not None:
                data[name] = value
        data.update(extra or {})
        if secret is not None:
            with self.http_client(timeout=timeout) as client:
                return client.post(self.token_endpoint, data=data, auth=(client_id, secret))
        assert self.ca is not None, "tls_client_auth needs the IdP's TestCA"
        data["client_id"] = client_id
        with httpx.Client(verify=self.ca.ssl_context(cert), timeout=timeout, trust_env=False) as client:
            return client.post(self.mtls_token_endpoint, data=data)

    def exchange(
        self,
        subject_token: str,
        client_id: str,
        secret: str | None = None,
        cert: IssuedCert | None = None,
        *,
        audience: str | None = EXCHANGE_AUDIENCE,
        scope: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Exchange `subject_token`; returns the JSON body, raises `IdpError` unless a
        200 with JSON. Arguments as `exchange_request`."""
        response = self.exchange_request(
            subject_token, client_id, secret, cert, audience=audience, scope=scope, **kwargs
        )
        if response.status_code != 200:
            raise IdpError(f"token exchange answered {response.status_code}: {response.text}")
        try:
            return response.json()
        except ValueError as exc:
            raise IdpError(f"token exchange answered 200 without JSON: {response.text[:200]!r}") from exc

    def _test_controls(self, method: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        with self.http_client() as client:
            response = client.request(method, f"{self.issuer}/__test/exchange", json=body)
        if response.status_code != 200:
            raise IdpError(
                f"/__test/exchange answered {response.status_code} (start with test_controls=True): {response.text}"
            )
        return response.json()

    def set_exchange_mode(self, mode: str, delay_ms: int = 0) -> None:
        """ "ok", "garbage" (200, non-JSON body) or "error500"; delay_ms before answering."""
        self._test_controls("POST", {"mode": mode, "delayMs": delay_ms})

    def exchange_count(self) -> int:
        """Token exchange requests that reached the grant handler (after client auth)."""
        return int(self._test_controls("GET")["count"])

    def reset_exchange_count(self) -> None:
        self._test_controls("POST", {"resetCount": True})

    def introspect(self, token: str, client_id: str, secret: str) -> dict[str, Any]:
        """RFC 7662 introspection with client_secret_basic; the JSON body."""
        with self.http_client() as client:
            response = client.post(self.introspection_endpoint, data={"token": token}, auth=(client_id, secret))
        if response.status_code != 200:
            raise IdpError(f"introspection answered {response.status_code}: {response.text}")
        return response.json()

    def revoke(self, token: str, client_id: str, secret: str) -> None:
        """RFC 7009 revocation; oidc-provider lets only the token's own client revoke it."""
        with self.http_client() as client:
            response = client.post(
                self.revocation_endpoint,
                data={"token": token, "token_type_hint": "access_token"},
                auth=(client_id, secret),
            )
        if response.status_code != 200:
            raise IdpError(f"revocation answered {response.status_code}: {response.text}")
