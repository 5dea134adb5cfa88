"""Refresh tokens (OAuth 2.1 draft 16 §3.2, §3.2.3, §4.3, §4.3.1, §4.3.3): the upstream's refresh
token only ever leaves the facade wrapped (sealed, bound to the client and the granted scope); a
refresh cannot widen the scope nor change the resource, and a public client's refresh token
cannot be replayed once it was rotated."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.support.facade import (
    FACADE_ISSUER,
    FACADE_RESOURCE,
    POLICY_UID,
    FacadeHarness,
    Registered,
    authorization_code,
    client_post,
    code_grant,
    fingerprint,
    jose_header,
    jwt_claims,
    oauth_error,
    refresh,
    sealing_keys_file,
)

from authgate.errors import SealError
from authgate.facade.records import REFRESH_TTL
from authgate.sealing import SealingKeys

GRANTS = ["authorization_code", "refresh_token"]


@pytest.fixture(scope="module")
def public(facade: FacadeHarness) -> Registered:
    return facade.register(grant_types=GRANTS)


@pytest.fixture(scope="module")
def other(facade: FacadeHarness) -> Registered:
    return facade.register(grant_types=GRANTS, client_name="Other app")


@pytest.fixture(scope="module")
def confidential(facade: FacadeHarness) -> Registered:
    return facade.register(grant_types=GRANTS, token_endpoint_auth_method="client_secret_basic")


@pytest.fixture(scope="module")
def keys(sealing_keys: Path) -> SealingKeys:
    return SealingKeys.load(sealing_keys)  # the test's own sealing keys


def login(facade: FacadeHarness, client: Registered, scope: str = "mcp:read") -> dict:
    body = facade.login(client, scope=scope)
    fields = sorted(body)
    assert "refresh_token" in fields, fields
    return body


def granted(response) -> set[str]:
    """The scope of a successful token response (asserts success; never shows the body)."""
    assert response.status_code == 200, response.text
    return set(response.json()["scope"].split())


def test_the_upstream_refresh_token_never_reaches_the_client(
    facade: FacadeHarness, public: Registered, keys: SealingKeys, tmp_path: Path
) -> None:
    issued = client_post(facade, "token", code_grant(*authorization_code(facade, public)), public)
    wrapped = issued.json()["refresh_token"]
    refreshed = refresh(facade, public, wrapped)
    assert refreshed.status_code == 200, refreshed.text
    header = jose_header(wrapped)
    assert (header.get("alg"), header.get("enc")) == ("dir", "A256GCM"), "not sealed by the facade"
    record = keys.open("refresh", FACADE_ISSUER, POLICY_UID, wrapped)
    assert record["cid"] == public.client_id
    upstream = record["rt"]
    leaked = upstream in issued.text or upstream in refreshed.text
    assert not leaked, "the upstream's refresh token was in a token response"
    with pytest.raises(SealError):
        SealingKeys.load(sealing_keys_file(tmp_path / "other.json")).open("refresh", FACADE_ISSUER, POLICY_UID, wrapped)


def test_a_refresh_token_is_bound_to_its_client(
    facade: FacadeHarness, public: Registered, other: Registered, confidential: Registered
) -> None:
    wrapped = login(facade, public)["refresh_token"]
    for thief in (other, confidential):
        stolen = refresh(facade, thief, wrapped)
        assert oauth_error(stolen) == "invalid_grant"
    response = refresh(facade, public, wrapped)
    assert granted(response) == {"mcp:read"}


def test_a_confidential_client_must_authenticate_to_refresh(facade: FacadeHarness, confidential: Registered) -> None:
    wrapped = login(facade, confidential)["refresh_token"]
    data = {"grant_type": "refresh_token", "refresh_token": wrapped}
    token_url = f"{FACADE_ISSUER}/oauth2/token"
    unauthenticated = facade.request("POST", token_url, data=data | {"client_id": confidential.client_id})
    wrong = facade.request("POST", token_url, data=data, auth=(confidential.client_id, "wrong"))
    assert oauth_error(unauthenticated, 401) == "invalid_client"
    assert oauth_error(wrong, 401) == "invalid_client"
    response = refresh(facade, confidential, wrapped)
    assert granted(response) == {"mcp:read"}


def test_each_refresh_returns_a_new_refresh_token(facade: FacadeHarness, confidential: Registered) -> None:
    current = login(facade, confidential)["refresh_token"]
    seen = {fingerprint(current)}
    for _ in range(3):
        response = refresh(facade, confidential, current)
        assert response.status_code == 200, response.text
        current = response.json()["refresh_token"]
        seen.add(fingerprint(current))
    assert len(seen) == 4, "a refresh returned a refresh token the client already had"


def test_a_public_clients_rotated_refresh_token_cannot_be_replayed(facade: FacadeHarness, public: Registered) -> None:
    first = login(facade, public)["refresh_token"]
    rotated = refresh(facade, public, first)
    assert rotated.status_code == 200, rotated.text
    new, old = fingerprint(rotated.json()["refresh_token"]), fingerprint(first)
    assert new != old
    replay = refresh(facade, public, first)  # an attacker holding the old one
    assert replay.status_code == 400, f"the rotated-out refresh token still works ({replay.status_code})"
    assert oauth_error(replay) == "invalid_grant"


def test_a_refresh_cannot_widen_the_scope(facade: FacadeHarness, public: Registered) -> None:
    wrapped = login(facade, public, scope="mcp:read")["refresh_token"]
    for scope in ("mcp:read mcp:write", "mcp:write", "mcp:read offline_access openid", "mcp:admin"):
        widened = refresh(facade, public, wrapped, scope=scope)
        assert oauth_error(widened) == "invalid_scope", scope
    response = refresh(facade, public, wrapped)
    assert granted(response) == {"mcp:read"}


def test_an_omitted_scope_is_the_scope_originally_granted(facade: FacadeHarness, public: Registered) -> None:
    wrapped = login(facade, public, scope="mcp:read mcp:write")["refresh_token"]
    response = refresh(facade, public, wrapped)
    assert granted(response) == {"mcp:read", "mcp:write"}


def test_an_empty_scope_parameter_is_treated_as_omitted(facade: FacadeHarness, public: Registered) -> None:
    wrapped = login(facade, public, scope="mcp:read mcp:write")["refresh_token"]
    response = refresh(facade, public, wrapped, scope="")
    assert granted(response) == {"mcp:read", "mcp:write"}


def test_a_narrowed_refresh_keeps_the_refresh_tokens_scope(facade: FacadeHarness, public: Registered) -> None:
    wrapped = login(facade, public, scope="mcp:read mcp:write")["refresh_token"]
    narrowed = refresh(facade, public, wrapped, scope="mcp:read")
    assert granted(narrowed) == {"mcp:read"}
    # §4.3.3: a new refresh token has the scope of the one it replaces, not of the access token.
    again = refresh(facade, public, narrowed.json()["refresh_token"], scope="mcp:read mcp:write")
    assert granted(again) == {"mcp:read", "mcp:write"}


def test_a_refresh_token_is_bound_to_the_consented_resource(facade: FacadeHarness, public: Registered) -> None:
    wrapped = login(facade, public)["refresh_token"]
    response = refresh(facade, public, wrapped, resource="https://other.example.com/mcp")
    if response.status_code == 200:
        audience = jwt_claims(response.json()["access_token"])["aud"]
        assert audience in (FACADE_RESOURCE, [FACADE_RESOURCE]), audience
    else:
        assert oauth_error(response) == "invalid_target"


def test_a_forged_or_modified_refresh_token_is_refused(
    facade: FacadeHarness, public: Registered, keys: SealingKeys, tmp_path: Path
) -> None:
    flow, code = authorization_code(facade, public)
    wrapped = client_post(facade, "token", code_grant(flow, code), public).json()["refresh_token"]
    record = keys.open("refresh", FACADE_ISSUER, POLICY_UID, wrapped)
    attacker_keys = SealingKeys.load(sealing_keys_file(tmp_path / "attacker.json"))
    forgeries = {
        "modified": wrapped[:-4] + ("AAAA" if not wrapped.endswith("AAAA") else "BBBB"),
        "sealed with other keys": attacker_keys.seal("refresh", FACADE_ISSUER, POLICY_UID, record, REFRESH_TTL),
        "expired": keys.seal("refresh", FACADE_ISSUER, POLICY_UID, record, REFRESH_TTL, now=time.time() - REFRESH_TTL),
        "a code": code,
        "the upstream's own": record["rt"],
        "random": "tGzv3JOkF0XG5Qx2TlKWIA",
    }
    for name, forged in forgeries.items():
        refused = refresh(facade, public, forged)
        assert oauth_error(refused) == "invalid_grant", name
    response = refresh(facade, public, wrapped)
    assert granted(response) == {"mcp:read"}


def test_a_client_without_the_refresh_token_grant_cannot_refresh(facade: FacadeHarness, public: Registered) -> None:
    code_only = facade.register(client_name="Code only")
    flow, code = authorization_code(facade, code_only)
    issued = client_post(facade, "token", code_grant(flow, code), code_only)
    assert granted(issued) == {"mcp:read"}
    fields = sorted(issued.json())
    assert "refresh_token" not in fields
    someone_elses = login(facade, public)["refresh_token"]
    refused = refresh(facade, code_only, someone_elses)
    assert oauth_error(refused) in ("unauthorized_client", "invalid_grant")


def test_no_token_is_written_to_the_log(facade: FacadeHarness, public: Registered, keys: SealingKeys) -> None:
    flow, code = authorization_code(facade, public)
    issued = client_post(facade, "token", code_grant(flow, code), public)
    assert issued.status_code == 200, issued.text
    body = issued.json()
    refreshed = refresh(facade, public, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    secrets = {
        "code": code,
        "access token": body["access_token"],
        "access token signature": body["access_token"].rsplit(".", 1)[-1],
        "refresh token": body["refresh_token"],
        "refresh token tag": body["refresh_token"].rsplit(".", 1)[-1],
        "upstream refresh token": keys.open("refresh", FACADE_ISSUER, POLICY_UID, body["refresh_token"])["rt"],
        "refreshed access token": refreshed.json()["access_token"],
    }
    log = facade.authgate.log()
    logged = sorted(name for name, secret in secrets.items() if secret in log)
    assert logged == [], "these reached the authgate log"
