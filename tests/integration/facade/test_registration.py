"""Dynamic client registration at the facade (RFC 7591), the redirect URIs a client may register
(OAuth 2.1 §2.3, RFC 8252 §7.3/§8.4, the MCP authorization spec's "localhost or https", OpenID
Connect Registration's application_type), the sealed client_id (DESIGN "Egress, sealing and
URLs": bound to its facade and policy, tamper-evident, rotation by kid) and the per-address
registration rate limit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.infra.idp import RESOURCES_BY_ALG, OidcProvider
from tests.support.facade import (
    FACADE_RESOURCE,
    POLICY_UID,
    FacadeHarness,
    Registered,
    client_post,
    facade_from,
    facade_policy,
    facade_policy_document,
    is_consent_page,
    jose_header,
    loopback_address,
    oauth_error,
    pkce_pair,
    sealing_keys_file,
    shown_error,
)

OTHER_ISSUER = "https://es256.example.com"
OTHER_RESOURCE = RESOURCES_BY_ALG["ES256"]
OTHER_UID = "0b5e7c1e-0000-4000-8000-0000000000e2"


@pytest.fixture(scope="module")
def gate(start_shared_facade: Callable[..., FacadeHarness], idp: OidcProvider) -> FacadeHarness:
    """mcp.example.com's facade, and a second one (es256.example.com, its own policy uid) on the
    same authgate with the same sealing keys."""
    other = facade_policy_document(
        idp.issuer, name="other", uid=OTHER_UID, resource=OTHER_RESOURCE, facade_issuer=OTHER_ISSUER
    )
    return start_shared_facade(f"{facade_policy(idp.issuer)}---\n{other}")


@pytest.fixture
def facade(gate: FacadeHarness) -> Iterator[FacadeHarness]:
    """The module's facade, reached from a source address of this test's own (rate limits)."""
    harness = facade_from(gate, loopback_address())
    yield harness
    harness.close()


def register(facade: FacadeHarness, body: object, **kwargs) -> httpx.Response:
    if "content" not in kwargs:
        kwargs["json"] = body
    return facade.request("POST", f"{facade.issuer}/oauth2/register", **kwargs)


def registration_error(response: httpx.Response) -> str:
    """RFC 7591 §3.2.2: a 400 JSON object with `error` (and no client); its error code."""
    assert response.status_code == 400, f"expected 400, got {response.status_code}: {response.text[:300]}"
    assert response.headers["content-type"].split(";")[0].strip() == "application/json"
    body = response.json()
    assert isinstance(body.get("error"), str), body
    assert "client_id" not in body and "client_secret" not in body, sorted(body)
    return body["error"]


def authenticates(facade: FacadeHarness, client: Registered) -> bool:
    """Does the token endpoint take the client's credentials? (A bogus code gets invalid_grant
    after a successful client authentication, invalid_client before.)"""
    verifier, _ = pkce_pair()
    data = {
        "grant_type": "authorization_code",
        "code": "not-a-code",
        "code_verifier": verifier,
        "redirect_uri": client.metadata["redirect_uris"][0],
    }
    response = client_post(facade, "token", data, client)
    if response.status_code == 401:
        assert oauth_error(response, 401) == "invalid_client"
        return False
    assert oauth_error(response) == "invalid_grant"
    return True


def test_rfc7591_registration_answers_201_with_every_registered_field(facade: FacadeHarness) -> None:
    """RFC 7591 §3 (the endpoint MUST accept POST application/json) and §3.2.1 (201 Created,
    application/json, client_id, client_secret_expires_at when a secret is issued, and all
    registered metadata, including fields the server provisioned)."""
    sent = {
        "redirect_uris": ["https://app.example.com/cb", "https://app.example.com/cb2"],
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "application_type": "web",
        "scope": "mcp:read offline_access",
        "client_name": "Conformance app",
        "client_uri": "https://app.example.com",
        "logo_uri": "https://app.example.com/logo.png",
        "tos_uri": "https://app.example.com/tos",
        "policy_uri": "https://app.example.com/privacy",
        "software_id": "4NRB1-0XZABZI9E6-5SM3R",
        "software_version": "2.1",
    }
    before = int(time.time())
    response = register(facade, sent)
    assert response.status_code == 201, response.text[:300]
    assert response.headers["content-type"].split(";")[0].strip() == "application/json"
    body = response.json()
    changed = sorted(name for name, value in sent.items() if body.get(name) != value)
    assert changed == [], f"registered fields not returned as sent: {changed}"
    assert isinstance(body["client_id"], str) and body["client_id"]
    assert before - 5 <= body["client_id_issued_at"] <= time.time() + 5
    assert isinstance(body["client_secret"], str) and len(body["client_secret"]) >= 32
    assert isinstance(body["client_secret_expires_at"], int)
    assert body["client_secret_expires_at"] == 0 or body["client_secret_expires_at"] > time.time()


@pytest.mark.parametrize(
    "method", [None, "client_secret_basic", "client_secret_post"], ids=["default", "basic", "post"]
)
def test_rfc7591_confidential_client_receives_a_client_secret_that_authenticates_it(
    facade: FacadeHarness, method: str | None
) -> None:
    """RFC 7591 §2 (token_endpoint_auth_method defaults to client_secret_basic) and §3.2.1
    (client_secret for a confidential client, client_secret_expires_at REQUIRED with it): the
    secret is real: it authenticates the client at the token endpoint, and a wrong one does not."""
    client = facade.register(token_endpoint_auth_method=method)
    assert client.metadata["token_endpoint_auth_method"] == (method or "client_secret_basic")
    assert client.client_secret, "a confidential client got no client_secret"
    assert "client_secret_expires_at" in client.metadata
    assert authenticates(facade, client)
    last = client.client_secret[-1]
    wrong = Registered(client.client_id, client.client_secret[:-1] + ("1" if last == "0" else "0"), client.metadata)
    assert not authenticates(facade, wrong)


def test_rfc7591_public_client_receives_no_client_secret(facade: FacadeHarness) -> None:
    """RFC 7591 §2: token_endpoint_auth_method `none` is a public client, which has no secret."""
    client = facade.register(token_endpoint_auth_method="none")
    assert client.metadata["token_endpoint_auth_method"] == "none"
    assert "client_secret" not in client.metadata and "client_secret_expires_at" not in client.metadata
    assert authenticates(facade, client)  # client_id alone: a public client at the token endpoint


def test_rfc7591_unknown_client_metadata_is_ignored(facade: FacadeHarness) -> None:
    """RFC 7591 §2: the authorization server MUST ignore client metadata it does not understand."""
    response = register(
        facade,
        {"redirect_uris": ["http://127.0.0.1:8000/cb"], "token_endpoint_auth_method": "none", "x_vendor_field": [1]},
    )
    assert response.status_code == 201, response.text[:300]
    assert "x_vendor_field" not in response.json()


@pytest.mark.parametrize(
    "body",
    [
        {"token_endpoint_auth_method": "private_key_jwt"},
        {"token_endpoint_auth_method": 7},
        {"grant_types": ["password"]},
        {"grant_types": ["implicit"]},
        {"grant_types": "authorization_code"},
        {"response_types": ["token"]},
        {"scope": "mcp:admin"},
        {"application_type": "service"},
        {"client_uri": "javascript:alert(1)"},
        {"client_name": "line\nbreak"},
    ],
    ids=[
        "auth-method-private-key-jwt",
        "auth-method-not-a-string",
        "grant-password",
        "grant-implicit",
        "grant-types-not-a-list",
        "response-type-token",
        "scope-not-offered",
        "application-type-unknown",
        "client-uri-javascript",
        "client-name-control-character",
    ],
)
def test_rfc7591_invalid_client_metadata_is_refused_with_a_400_json_error(facade: FacadeHarness, body: dict) -> None:
    """RFC 7591 §3.2.2: a registration error is HTTP 400, application/json, `error`
    invalid_client_metadata for a metadata value the server will not accept."""
    sent = {"redirect_uris": ["http://127.0.0.1:8000/cb"], "token_endpoint_auth_method": "none", **body}
    assert registration_error(register(facade, sent)) == "invalid_client_metadata"


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[1, 2]", b'"a string"', b"{"],
    ids=["text", "array", "string", "truncated"],
)
def test_rfc7591_a_body_that_is_not_a_json_object_is_invalid_client_metadata(
    facade: FacadeHarness, content: bytes
) -> None:
    """RFC 7591 §3 (the request is a JSON object) and §3.2.2 (400 with an error code)."""
    response = register(facade, None, content=content, headers={"Content-Type": "application/json"})
    assert registration_error(response) == "invalid_client_metadata"


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://app.example.com/cb#fragment",
        "https://app.example.com/cb#",
        "http://127.0.0.1:8000/cb#x",
        "/relative/cb",
        "app.example.com/cb",
        "",
    ],
)
def test_oauth21_redirect_uri_must_be_an_absolute_uri_without_a_fragment(
    facade: FacadeHarness, redirect_uri: str
) -> None:
    """OAuth 2.1 §2.3.1 / RFC 6749 §3.1.2: a redirect URI MUST be an absolute URI and MUST NOT
    include a fragment; RFC 7591 §3.2.2: refused with invalid_redirect_uri."""
    sent = {"redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none"}
    assert registration_error(register(facade, sent)) == "invalid_redirect_uri"


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "javascript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "com.example.app:/oauth2redirect",
        "vscode://anthropic.claude/callback",
        "http://app.example.com/cb",
        "http://10.0.0.1:8000/cb",
        "ftp://app.example.com/cb",
    ],
    ids=["javascript", "data", "file", "private-use", "custom-scheme", "http-remote", "http-private", "ftp"],
)
def test_mcp_redirect_uris_must_be_localhost_or_https(facade: FacadeHarness, redirect_uri: str) -> None:
    """MCP 2025-11-25 "Communication Security" / 2026-07-28 security considerations: all
    redirect URIs MUST be either localhost or use HTTPS (RFC 7591 §3.2.2: invalid_redirect_uri).
    Every other scheme is refused, also next to a good redirect URI."""
    for uris in ([redirect_uri], ["http://127.0.0.1:8000/cb", redirect_uri]):
        sent = {"redirect_uris": uris, "token_endpoint_auth_method": "none"}
        assert registration_error(register(facade, sent)) == "invalid_redirect_uri"


@pytest.mark.parametrize(
    ("registered", "requested"),
    [
        ("http://127.0.0.1/callback", "http://127.0.0.1:51234/callback"),
        ("http://127.0.0.1:8000/callback", "http://127.0.0.1:51234/callback"),
        ("http://[::1]:8000/callback", "http://[::1]:51234/callback"),
        ("http://localhost:8000/callback", "http://localhost:51234/callback"),
    ],
    ids=["ipv4-no-port", "ipv4", "ipv6", "localhost"],
)
def test_rfc8252_loopback_redirect_uri_accepts_any_port_at_request_time(
    facade: FacadeHarness, registered: str, requested: str
) -> None:
    """RFC 8252 §7.3 (and OAuth 2.1 §8.4.2): the authorization server MUST allow any port to be
    specified at the time of the request for loopback IP redirect URIs (http on 127.0.0.1,
    [::1], and localhost per DESIGN); everything else about the URI still matches exactly
    (RFC 8252 §8.4)."""
    client = facade.register(redirect_uris=[registered])
    assert client.metadata["application_type"] == "native"
    flow = facade.start(client, redirect_uri=requested)
    assert flow.consent_page is not None and is_consent_page(flow.consent_page), flow.consent_page.text[:300]
    other_path = requested.replace("/callback", "/elsewhere")
    shown_error(facade.start(client, redirect_uri=other_path).consent_page)  # type: ignore[arg-type]


def test_oidc_registration_redirect_uris_are_verified_against_the_application_type(facade: FacadeHarness) -> None:
    """OpenID Connect Registration 1.0 §2 (application_type, cited by MCP 2026-07-28 "Application
    Type and Redirect URI Constraints"): the server MUST verify that all registered redirect_uris
    conform to the application_type's constraints. The facade's constraint (docs/facade.md,
    stricter than OIDC's, which asks https only of implicit-grant web clients): web needs https.
    When application_type is absent, an all-loopback client is registered as native, and says so."""
    web_loopback = {"redirect_uris": ["http://127.0.0.1:8000/cb"], "application_type": "web"}
    assert registration_error(register(facade, {**web_loopback, "token_endpoint_auth_method": "none"})) == (
        "invalid_redirect_uri"
    )
    inferred = facade.register(redirect_uris=["http://localhost:8000/cb"])
    assert inferred.metadata["application_type"] == "native"
    web = facade.register(redirect_uris=["https://app.example.com/cb"])
    assert web.metadata["application_type"] == "web"
    native = facade.register(redirect_uris=["http://[::1]:8000/cb"], application_type="native")
    assert native.metadata["application_type"] == "native"


def test_oauth21_registration_response_carrying_a_client_secret_is_not_cached(facade: FacadeHarness) -> None:
    """OAuth 2.1 §3.2.3 (draft 13+): any response containing credentials MUST carry
    Cache-Control: no-store; a registration response carries the client_secret."""
    response = register(
        facade, {"redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "client_secret_post"}
    )
    assert response.status_code == 201, response.text[:300]
    assert "client_secret" in response.json()
    assert "no-store" in response.headers.get("cache-control", "")


@pytest.fixture(scope="module")
def other_policy_uid(start_shared_facade: Callable[..., FacadeHarness], idp: OidcProvider) -> FacadeHarness:
    """The same facade issuer and sealing keys, but another policy (another metadata.uid: the
    policy was deleted and created again)."""
    return start_shared_facade(facade_policy(idp.issuer).replace(POLICY_UID, OTHER_UID))


@pytest.mark.parametrize("where", ["another-facade-same-process", "same-issuer-another-policy-uid"])
def test_sealing_client_id_works_only_at_the_facade_and_policy_that_issued_it(
    facade: FacadeHarness, request: pytest.FixtureRequest, where: str
) -> None:
    """DESIGN (sealing): every sealed value names its purpose, facade issuer and policy uid, so a
    client_id registered at one facade or policy is an unknown client at any other, at the
    authorization endpoint and at the token endpoint."""
    client = facade.register(token_endpoint_auth_method="client_secret_post")
    assert authenticates(facade, client)
    if where == "another-facade-same-process":
        other = facade_from(facade, loopback_address(), issuer=OTHER_ISSUER)
        resource = OTHER_RESOURCE
    else:
        other = facade_from(request.getfixturevalue("other_policy_uid"), loopback_address())
        resource = FACADE_RESOURCE
    try:
        page = shown_error(other.start(client, resource=resource).consent_page)  # type: ignore[arg-type]
        assert "unknown client" in page
        assert not authenticates(other, client)
    finally:
        other.close()


def _tampered(client_id: str, segment: int) -> str:
    parts = client_id.split(".")
    text = parts[segment]
    middle = len(text) // 2
    parts[segment] = text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1 :]
    return ".".join(parts)


@pytest.mark.parametrize("segment", [0, 2, 3, 4], ids=["header", "iv", "ciphertext", "tag"])
def test_sealing_a_client_id_with_one_changed_character_is_an_unknown_client(
    facade: FacadeHarness, segment: int
) -> None:
    """DESIGN (sealing): a sealed value is an authenticated JWE (dir, A256GCM); a client_id
    changed anywhere is not a client, neither at the authorization endpoint nor at the token
    endpoint (no redirect to the redirect_uri it would name)."""
    client = facade.register(token_endpoint_auth_method="client_secret_basic")
    assert client.client_id.count(".") == 4
    assert client.client_id.split(".")[1] == "", "a dir JWE has no encrypted key"
    forged = Registered(_tampered(client.client_id, segment), client.client_secret, client.metadata)
    page = shown_error(facade.start(forged).consent_page)  # type: ignore[arg-type]
    assert "unknown client" in page
    assert not authenticates(facade, forged)


@pytest.fixture(scope="module")
def rotated_keys(sealing_keys: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(k1 + k2, k2 alone): k1 is the module's key, k2 a new one appended after it."""
    directory = tmp_path_factory.mktemp("rotation")
    k1 = json.loads(sealing_keys.read_text())["keys"]
    k2 = json.loads(sealing_keys_file(directory / "k2.json", "k2").read_text())["keys"]
    assert [key["kid"] for key in k1] == ["k1"]
    both, only_k2 = directory / "k1-k2.json", directory / "only-k2.json"
    both.write_text(json.dumps({"keys": [*k1, *k2]}))
    only_k2.write_text(json.dumps({"keys": k2}))
    return both, only_k2


def test_sealing_rotation_keeps_registered_clients_and_seals_with_the_newest_key(
    facade: FacadeHarness, start_shared_facade: Callable[..., FacadeHarness], rotated_keys: tuple[Path, Path]
) -> None:
    """DESIGN (sealing): rotation by kid, the newest key (last in the file) seals, all keys open.
    A client registered under [k1] still works when the file is [k1, k2]; clients registered
    then are sealed with k2 (and so open where only k2 is)."""
    both, only_k2 = rotated_keys
    public = facade.register()
    confidential = facade.register(token_endpoint_auth_method="client_secret_post")
    assert jose_header(public.client_id)["kid"] == "k1"

    rotated = facade_from(start_shared_facade(keys=both), loopback_address())
    newest = facade_from(start_shared_facade(keys=only_k2), loopback_address())
    try:
        assert is_consent_page(rotated.start(public).consent_page)  # type: ignore[arg-type]
        assert authenticates(rotated, confidential), "a secret issued under k1 no longer authenticates"
        fresh = rotated.register(token_endpoint_auth_method="client_secret_post")
        assert jose_header(fresh.client_id)["kid"] == "k2"
        assert is_consent_page(newest.start(fresh).consent_page)  # type: ignore[arg-type]
        assert authenticates(newest, fresh)
        assert "unknown client" in shown_error(newest.start(public).consent_page)  # type: ignore[arg-type]
    finally:
        rotated.close()
        newest.close()


def test_registration_is_rate_limited_per_client_address_with_429(facade: FacadeHarness) -> None:
    """Abuse protection of the open registration endpoint (docs/facade.md: 20 a minute per
    client address, burst 20): over the limit, 429 with Retry-After and a JSON error; another
    address is not affected."""
    body = {"redirect_uris": ["http://127.0.0.1:8000/cb"], "token_endpoint_auth_method": "none"}
    statuses = [register(facade, body).status_code for _ in range(20)]
    assert statuses == [201] * 20, statuses
    limited = None
    for _ in range(5):
        response = register(facade, body)
        if response.status_code == 429:
            limited = response
            break
        assert response.status_code == 201, response.status_code
    assert limited is not None, "25 registrations in a row from one address were all accepted"
    assert int(limited.headers["retry-after"]) > 0
    assert limited.headers["content-type"].split(";")[0].strip() == "application/json"
    assert isinstance(limited.json().get("error"), str)
    neighbour = facade_from(facade, loopback_address())
    try:
        assert register(neighbour, body).status_code == 201
    finally:
        neighbour.close()
