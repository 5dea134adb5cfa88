"""Drive authgate's OAuth facade over real HTTP, without a browser: the client side
(registration, authorize, token) and the user's side (consent form, cookies, the
upstream oidc-provider's automated login), step by step so tests can tamper with any step.

The facade's issuer is `https://mcp.example.com` (a name, not a listener): requests go to
authgate's public port on 127.0.0.1 with that Host header, the way an ingress that
terminates TLS would send them. Cookies are kept by hand: they are `Secure`, and httpx
would not send them over the plain-http hop.

    facade = FacadeHarness(...)                  # see `facade_setup()` for a ready one
    client = facade.register()
    flow = facade.start(client)                  # the consent page
    redirect = facade.approve(flow)              # → upstream → callback → client redirect
    tokens = facade.redeem(client, flow, redirect)
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from tests.support.idp import RESOURCES_BY_ALG, Client, OidcProvider

FACADE_HOST = "mcp.example.com"
FACADE_ISSUER = f"https://{FACADE_HOST}"
FACADE_RESOURCE = RESOURCES_BY_ALG["RS256"]  # https://mcp.example.com/mcp
CALLBACK = f"{FACADE_ISSUER}/oauth2/callback"
UPSTREAM_CLIENT = Client("authgate-facade", "authgate-facade-secret", CALLBACK)
LOOPBACK_REDIRECT = "http://127.0.0.1:33418/callback"


def upstream_client_metadata() -> dict[str, Any]:
    """oidc-provider metadata of the facade's own client at the upstream."""
    return {
        "client_id": UPSTREAM_CLIENT.client_id,
        "client_secret": UPSTREAM_CLIENT.client_secret,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [CALLBACK],
    }


def sealing_keys_file(path: Path, *kids: str) -> Path:
    keys = [
        {"kty": "oct", "kid": kid, "k": base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()}
        for kid in (kids or ("k1",))
    ]
    path.write_text(json.dumps({"keys": keys}))
    return path


def facade_policy(
    idp_issuer: str,
    *,
    consent: str = "always",
    extra_facade: str = "",
    extra_spec: str = "",
    upstream_scopes: str = "[openid, offline_access]",
) -> str:
    return f"""\
apiVersion: authgate.dev/v1alpha1
kind: OAuthPolicy
metadata: {{name: mcp, namespace: default, uid: 0b5e7c1e-0000-4000-8000-000000000001}}
spec:
  resource: {FACADE_RESOURCE}
  issuers:
    - issuer: {idp_issuer}
  scopeRoles:
    - {{scope: "mcp:read", role: reader}}
    - {{scope: "mcp:write", role: writer}}
  facade:
    issuer: {FACADE_ISSUER}
    consent: {consent}
    upstream:
      issuer: {idp_issuer}
      clientId: {UPSTREAM_CLIENT.client_id}
      clientSecretRef: {{name: facade-upstream, key: secret}}
      scopes: {upstream_scopes}
{extra_facade}
{extra_spec}
---
apiVersion: v1
kind: Secret
metadata: {{name: facade-upstream, namespace: default}}
stringData: {{secret: {UPSTREAM_CLIENT.client_secret}}}
"""


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class Registered:
    client_id: str
    client_secret: str | None
    metadata: dict[str, Any]


@dataclass
class Flow:
    """One authorization in progress, as the user's browser and the client see it."""

    verifier: str
    challenge: str
    state: str
    params: dict[str, str]
    cookies: dict[str, str] = field(default_factory=dict)
    consent_page: httpx.Response | None = None

    @property
    def consent_value(self) -> str:
        assert self.consent_page is not None
        match = re.search(r'name="consent" value="([^"]+)"', self.consent_page.text)
        assert match, f"no consent form in {self.consent_page.text[:300]}"
        return html.unescape(match.group(1))


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


class FacadeHarness:
    def __init__(self, public_port: int, idp: OidcProvider, issuer: str = FACADE_ISSUER) -> None:
        self.idp = idp
        self.issuer = issuer
        self.host = urlsplit(issuer).netloc
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{public_port}", timeout=15, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def local(self, url: str) -> str:
        """An https://<facade> URL as the path to send to the public port."""
        parts = urlsplit(url)
        assert parts.netloc == self.host, f"{url} is not on the facade {self.host}"
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def request(self, method: str, url: str, cookies: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Host": self.host, **kwargs.pop("headers", {})}
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        return self.http.request(method, self.local(url), headers=headers, **kwargs)

    def metadata(self) -> dict[str, Any]:
        response = self.request("GET", f"{self.issuer}/.well-known/oauth-authorization-server")
        response.raise_for_status()
        return response.json()

    def register(self, **overrides: Any) -> Registered:
        body = {"redirect_uris": [LOOPBACK_REDIRECT], "token_endpoint_auth_method": "none", "client_name": "Test app"}
        body.update(overrides)
        body = {k: v for k, v in body.items() if v is not None}
        response = self.request("POST", f"{self.issuer}/oauth2/register", json=body)
        assert response.status_code == 201, response.text
        data = response.json()
        return Registered(data["client_id"], data.get("client_secret"), data)

    def authorize_params(self, client: Registered, **overrides: str | None) -> tuple[dict[str, str], str, str]:
        verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": client.metadata["redirect_uris"][0],
            "scope": "mcp:read",
            "state": secrets.token_urlsafe(12),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": FACADE_RESOURCE,
        }
        params.update(overrides)  # type: ignore[arg-type]
        return {k: v for k, v in params.items() if v is not None}, verifier, challenge

    def start(self, client: Registered, **overrides: str | None) -> Flow:
        """GET /oauth2/authorize; the consent page is kept in the flow (and its cookies)."""
        params, verifier, challenge = self.authorize_params(client, **overrides)
        response = self.request("GET", f"{self.issuer}/oauth2/authorize", params=params)
        flow = Flow(verifier, challenge, params.get("state", ""), params, consent_page=response)
        flow.cookies.update(set_cookies(response))
        return flow

    def decide(self, flow: Flow, decision: str = "approve", **kwargs: Any) -> httpx.Response:
        return self.request(
            "POST",
            f"{self.issuer}/oauth2/authorize",
            cookies=kwargs.pop("cookies", flow.cookies),
            data={"consent": kwargs.pop("consent", flow.consent_value), "decision": decision},
            headers=kwargs.pop("headers", {"Origin": self.issuer}),
        )

    def through_upstream(self, response: httpx.Response, flow: Flow) -> httpx.Response:
        """From a redirect to the upstream: its automated login, back to the facade's
        callback (with the flow's cookies); returns the callback's answer."""
        assert response.status_code == 303, f"{response.status_code}: {response.text[:300]}"
        flow.cookies.update(set_cookies(response))
        location = response.headers["location"]
        assert location.startswith(self.idp.authorization_endpoint), location
        with self.idp.http_client(follow_redirects=False) as idp_http:
            answer = idp_http.get(location)
            for _ in range(10):
                assert answer.is_redirect, f"IdP stopped at {answer.status_code}: {answer.text[:300]}"
                location = urljoin(str(answer.request.url), answer.headers["location"])
                if location.startswith(CALLBACK):
                    break
                answer = idp_http.get(location)
        return self.request("GET", location, cookies=flow.cookies)

    def approve(self, flow: Flow) -> httpx.Response:
        """Consent approved and the upstream round trip done: the redirect to the client."""
        return self.through_upstream(self.decide(flow, "approve"), flow)

    def token(self, data: dict[str, str], client: Registered | None = None, basic: bool = False) -> httpx.Response:
        auth = None
        if client is not None and client.client_secret is not None and basic:
            auth = (client.client_id, client.client_secret)
        elif client is not None:
            data = {"client_id": client.client_id, **data}
            if client.client_secret is not None:
                data["client_secret"] = client.client_secret
        return self.request("POST", f"{self.issuer}/oauth2/token", data=data, auth=auth)

    def redeem(self, client: Registered, flow: Flow, redirect: httpx.Response, **extra: str) -> httpx.Response:
        assert redirect.status_code == 302, f"{redirect.status_code}: {redirect.text[:300]}"
        answer = query_of(redirect.headers["location"])
        assert "code" in answer, answer
        data = {
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": flow.params["redirect_uri"],
            "code_verifier": flow.verifier,
        }
        data.update(extra)
        basic = client.metadata.get("token_endpoint_auth_method") == "client_secret_basic"
        return self.token(data, client, basic=basic)

    def login(self, client: Registered, **overrides: str | None) -> dict[str, Any]:
        """The whole flow; the token response."""
        flow = self.start(client, **overrides)
        response = self.redeem(client, flow, self.approve(flow))
        assert response.status_code == 200, response.text
        return response.json()


def set_cookies(response: httpx.Response) -> dict[str, str]:
    cookies = {}
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        cookies[name.strip()] = rest.split(";", 1)[0]
    return cookies
