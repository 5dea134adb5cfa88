"""Drive authgate's OAuth facade over real HTTP, without a browser: the client side
(registration, authorize, token) and the user's side (consent form, cookies, the
upstream oidc-provider's automated login), step by step so tests can tamper with any step.

The facade's issuer is `https://mcp.example.com` (a name, not a listener): requests go to
authgate's public port on 127.0.0.1 with that Host header, the way an ingress that
terminates TLS would send them. Cookies are kept by hand: they are `Secure`, and httpx
would not send them over the plain-http hop.

    facade = FacadeHarness(...)                  # tests/integration/facade/conftest.py has ready ones
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
from tests.infra.idp import RESOURCES_BY_ALG, Client, OidcProvider
from tests.support.leaks import remember_secret

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
    """The facade policy at FACADE_ISSUER protecting FACADE_RESOURCE; `extra_facade` is appended
    under spec.facade (indent 4), `extra_spec` under spec (indent 2)."""
    return facade_policy_at(
        idp_issuer,
        issuer=FACADE_ISSUER,
        resource=FACADE_RESOURCE,
        consent=consent,
        extra_facade=extra_facade,
        extra_spec=extra_spec,
        upstream_scopes=upstream_scopes,
        uid=POLICY_UID,
    )


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
        remember_secret(data.get("client_secret"))
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
        remember_secret(cookies[name.strip()])
    return cookies


# -- a facade at another origin (e.g. behind a TLS proxy on a test port) --------------------
def upstream_client_metadata_at(issuer: str) -> dict[str, Any]:
    """`upstream_client_metadata()` for a facade whose issuer is `issuer`: its callback is under it."""
    return {**upstream_client_metadata(), "redirect_uris": [f"{issuer}/oauth2/callback"]}


def facade_policy_at(
    idp_issuer: str,
    *,
    issuer: str,
    resource: str,
    consent: str = "always",
    extra_facade: str = "",
    extra_spec: str = "",
    upstream_scopes: str = "[openid, offline_access]",
    uid: str = "0b5e7c1e-0000-4000-8000-000000000002",
    name: str = "mcp",
    with_secret: bool = True,
) -> str:
    """`facade_policy()` for a facade at `issuer` protecting `resource` (its host is the policy's
    host, port included); `extra_spec` is appended under spec (indent 2), e.g. rules; with
    the Secret holding the upstream client's secret unless `with_secret` is False."""
    policy = f"""\
apiVersion: authgate.dev/v1alpha1
kind: OAuthPolicy
metadata: {{name: {name}, namespace: default, uid: {uid}}}
spec:
  resource: {resource}
  issuers:
    - issuer: {idp_issuer}
  scopeRoles:
    - {{scope: "mcp:read", role: reader}}
    - {{scope: "mcp:write", role: writer}}
  facade:
    issuer: {issuer}
    consent: {consent}
    upstream:
      issuer: {idp_issuer}
      clientId: {UPSTREAM_CLIENT.client_id}
      clientSecretRef: {{name: facade-upstream, key: secret}}
      scopes: {upstream_scopes}
{extra_facade}
{extra_spec}
"""
    if not with_secret:
        return policy
    return f"""{policy}---
apiVersion: v1
kind: Secret
metadata: {{name: facade-upstream, namespace: default}}
stringData: {{secret: {UPSTREAM_CLIENT.client_secret}}}
"""


# -- conformance tests: a flow taken apart step by step, secrets compared without printing them --
POLICY_UID = "0b5e7c1e-0000-4000-8000-000000000001"  # metadata.uid of facade_policy()
# Everything the facade may send to the upstream's authorization endpoint.
UPSTREAM_AUTHORIZE_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "resource",
        "prompt",
    }
)
CLIENT_STATE = "client-state"  # the state `authorize()` sends unless told otherwise
# OAuth 2.1 §3.2.4, §4.1.2.1: `error` and `error_description` use only %x20-21 / %x23-5B / %x5D-7E.
ERROR_TEXT = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


def fingerprint(secret: str) -> str:
    """A short digest of a secret: assertions compare these, so a failure never prints a token."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def jose_header(value: str) -> dict[str, Any]:
    """The protected header of a compact JWS or JWE, not verified."""
    head = value.split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, read without verifying it."""
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def start_in(facade: FacadeHarness, client: Registered, cookies: dict[str, str], **overrides: str | None) -> Flow:
    """`facade.start()` in a browser that already holds `cookies`; the answer may be the consent
    page or, for a remembered consent, the redirect to the upstream (`flow.consent_page` either way)."""
    params, verifier, challenge = facade.authorize_params(client, **overrides)
    response = facade.request("GET", f"{facade.issuer}/oauth2/authorize", cookies=cookies, params=params)
    flow = Flow(verifier, challenge, params.get("state", ""), params, dict(cookies), response)
    flow.cookies.update(set_cookies(response))
    return flow


def upstream_callback(facade: FacadeHarness, location: str) -> str:
    """The upstream's automated login, from its authorization URL `location` to its redirect back
    to the facade: that callback URL, not requested yet (so a test can tamper with it first)."""
    with facade.idp.http_client(follow_redirects=False) as idp_http:
        answer = idp_http.get(location)
        for _ in range(10):
            assert answer.is_redirect, f"the IdP stopped at {answer.status_code}: {answer.text[:300]}"
            location = urljoin(str(answer.request.url), answer.headers["location"])
            if location.startswith(f"{facade.issuer}/oauth2/callback"):
                return location
            answer = idp_http.get(location)
    raise AssertionError("the IdP never redirected back to the facade's callback")


def callback_url(facade: FacadeHarness, decision: httpx.Response, flow: Flow) -> str:
    """From an approval (a 303 to the upstream): the browser keeps its cookies, the user logs in
    at the upstream; the callback URL the upstream sends the browser to."""
    assert decision.status_code == 303, f"{decision.status_code}: {decision.text[:300]}"
    flow.cookies.update(set_cookies(decision))
    location = decision.headers["location"]
    assert location.startswith(facade.idp.authorization_endpoint), urlsplit(location).netloc
    return upstream_callback(facade, location)


def redirect_params(response: httpx.Response) -> dict[str, str]:
    """The query of a redirect's Location, asserting the response is a 302/303 redirect."""
    assert response.status_code in (302, 303), f"not a redirect: {response.status_code}: {response.text[:300]}"
    return query_of(response.headers["location"])


def authorize(facade: FacadeHarness, client: Registered, **overrides: str | None) -> httpx.Response:
    """GET /oauth2/authorize for `client` with state CLIENT_STATE unless overridden; the answer, not followed."""
    params, _, _ = facade.authorize_params(client, **({"state": CLIENT_STATE} | overrides))
    return facade.request("GET", f"{facade.issuer}/oauth2/authorize", params=params)


def authorization_code(facade: FacadeHarness, client: Registered, **overrides: str | None) -> tuple[Flow, str]:
    """A flow approved through the upstream: (the flow, the facade's code for the client)."""
    flow = facade.start(client, **overrides)
    params = redirect_params(facade.approve(flow))
    assert "code" in params, f"no code: {sorted(params)}, error={params.get('error')}"
    return flow, params["code"]


def code_grant(flow: Flow, code: str, **extra: str) -> dict[str, str]:
    """The authorization_code token request for `code` (the flow's redirect_uri and verifier)."""
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": flow.verifier}
    if "redirect_uri" in flow.params:
        data["redirect_uri"] = flow.params["redirect_uri"]
    return data | extra


def client_post(
    facade: FacadeHarness, endpoint: str, data: dict[str, str], client: Registered | None = None
) -> httpx.Response:
    """POST to /oauth2/<endpoint> (token, introspect, revoke), authenticated the way `client`
    registered: Basic, client_secret in the body, or client_id alone."""
    basic = client is not None and client.metadata.get("token_endpoint_auth_method") == "client_secret_basic"
    auth = None
    if client is not None and basic:
        auth = (client.client_id, client.client_secret or "")
    elif client is not None:
        data = {"client_id": client.client_id, **data}
        if client.client_secret is not None:
            data["client_secret"] = client.client_secret
    return facade.request("POST", f"{facade.issuer}/oauth2/{endpoint}", data=data, auth=auth)


def refresh(facade: FacadeHarness, client: Registered, refresh_token: str, **extra: str) -> httpx.Response:
    """The refresh_token grant at the token endpoint, authenticated the way `client` registered."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    return client_post(facade, "token", data, client)


def oauth_error(response: httpx.Response, status: int = 400) -> str:
    """Asserts an RFC 6749 §5.2 JSON error with `status` that no cache may keep; its error code."""
    shown = "(a success: body not shown)" if response.is_success else response.text[:300]
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {shown}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    assert "no-store" in response.headers.get("cache-control", ""), response.headers
    body = response.json()
    assert isinstance(body.get("error"), str), body
    assert "access_token" not in body and "refresh_token" not in body, sorted(body)
    return body["error"]


def shown_error(response: httpx.Response) -> str:
    """Asserts an error page shown to the user, never a redirect anywhere; its text."""
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    assert "location" not in response.headers, "an error that must be shown was redirected"
    assert response.headers.get("content-type", "").startswith("text/html"), response.headers
    return response.text


def cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    """The attributes of the Set-Cookie for `name`, keys lowercased ("" for flags like Secure)."""
    for header in response.headers.get_list("set-cookie"):
        if header.split("=", 1)[0].strip() == name:
            attributes = {}
            for part in header.split(";")[1:]:
                key, _, value = part.strip().partition("=")
                attributes[key.lower()] = value
            return attributes
    raise AssertionError(f"no Set-Cookie for {name}")


# -- helpers for the conformance tests (discovery, registration, CIMD, MCP spec) ------------


_loopback_hosts = iter(range(10, 250 * 250))


def loopback_address() -> str:
    """A fresh 127.0.x.y source address (never 127.0.0.1), different on every call."""
    n = next(_loopback_hosts)
    return f"127.0.{n // 250}.{n % 250 + 1}"


def facade_from(harness: FacadeHarness, address: str, issuer: str | None = None) -> FacadeHarness:
    """Another FacadeHarness on the same authgate whose requests leave from `address`.

    The facade's rate limits count per client address: a test with a source address of its
    own has buckets of its own, whatever the other tests of the module did before it."""
    port = harness.http.base_url.port
    assert port is not None
    other = FacadeHarness(port, harness.idp, issuer or harness.issuer)
    other.http.close()
    other.http = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        timeout=15,
        trust_env=False,
        transport=httpx.HTTPTransport(local_address=address),
    )
    if hasattr(harness, "authgate"):
        other.authgate = harness.authgate  # type: ignore[attr-defined]
    return other


def facade_policy_document(
    idp_issuer: str,
    *,
    name: str,
    uid: str,
    resource: str,
    facade_issuer: str,
    extra_facade: str = "",
    extra_spec: str = "",
) -> str:
    """One more facade policy for the same authgate as `facade_policy()` (append it after a
    `---`): it names the same upstream client and Secret, on its own host and policy uid."""
    return facade_policy_at(
        idp_issuer,
        issuer=facade_issuer,
        resource=resource,
        extra_facade=extra_facade,
        extra_spec=extra_spec,
        name=name,
        uid=uid,
        with_secret=False,
    )


def is_consent_page(response: httpx.Response) -> bool:
    """The consent page (200, with the sealed request in its form), not an error or a redirect."""
    return response.status_code == 200 and 'name="consent"' in response.text
