"""Introspection (RFC 7662) and revocation (RFC 7009), proxied to the upstream: only authenticated
clients introspect, and only their own tokens; revocation answers 200 for tokens it does not know,
never revokes another client's token, and a revoked wrapped refresh token no longer refreshes."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.facade import (
    FACADE_ISSUER,
    POLICY_UID,
    FacadeHarness,
    Registered,
    client_post,
    oauth_error,
    refresh,
)

from authgate.sealing import SealingKeys

GRANTS = ["authorization_code", "refresh_token"]


@pytest.fixture(scope="module")
def resource_server(facade: FacadeHarness) -> Registered:
    return facade.register(grant_types=GRANTS, token_endpoint_auth_method="client_secret_basic")


@pytest.fixture(scope="module")
def other_server(facade: FacadeHarness) -> Registered:
    return facade.register(grant_types=GRANTS, token_endpoint_auth_method="client_secret_post")


@pytest.fixture(scope="module")
def public(facade: FacadeHarness) -> Registered:
    return facade.register(grant_types=GRANTS)


def introspection(response) -> dict:
    """An introspection answer (asserts a 200 JSON body that no cache keeps)."""
    assert response.status_code == 200, response.text
    assert "no-store" in response.headers.get("cache-control", "")
    return response.json()


def test_introspection_requires_an_authenticated_client(
    facade: FacadeHarness, resource_server: Registered, public: Registered
) -> None:
    token = facade.login(resource_server)["refresh_token"]
    url = f"{FACADE_ISSUER}/oauth2/introspect"
    attempts = {
        "anonymous": facade.request("POST", url, data={"token": token}),
        "public client": client_post(facade, "introspect", {"token": token}, public),
        "wrong secret": facade.request("POST", url, data={"token": token}, auth=(resource_server.client_id, "wrong")),
        "client_id only": facade.request("POST", url, data={"token": token, "client_id": resource_server.client_id}),
    }
    for name, response in attempts.items():
        assert oauth_error(response, 401) == "invalid_client", name


def test_a_clients_own_refresh_token_introspects_as_active(
    facade: FacadeHarness, resource_server: Registered, sealing_keys: Path
) -> None:
    token = facade.login(resource_server)["refresh_token"]
    response = client_post(facade, "introspect", {"token": token}, resource_server)
    answer = introspection(response)
    assert answer.get("active") is True
    assert answer.get("client_id") == resource_server.client_id
    assert "mcp:read" in answer.get("scope", "").split()
    upstream = SealingKeys.load(sealing_keys).open("refresh", FACADE_ISSUER, POLICY_UID, token)["rt"]
    leaked = upstream in response.text
    assert not leaked, "introspection revealed the upstream's refresh token"


def test_a_clients_own_access_token_introspects_as_active(facade: FacadeHarness, resource_server: Registered) -> None:
    token = facade.login(resource_server)["access_token"]
    response = client_post(facade, "introspect", {"token": token, "token_type_hint": "access_token"}, resource_server)
    answer = introspection(response)
    assert answer.get("active") is True


def test_an_unknown_token_introspects_as_inactive_and_nothing_more(
    facade: FacadeHarness, resource_server: Registered
) -> None:
    wrapped = facade.login(resource_server)["refresh_token"]
    tampered = wrapped[:-4] + ("AAAA" if not wrapped.endswith("AAAA") else "BBBB")
    outcomes = {}
    for name, token in (("unknown", "no-such-token"), ("tampered", tampered)):
        response = client_post(facade, "introspect", {"token": token}, resource_server)
        outcomes[name] = response.json() if response.status_code == 200 else response.status_code
    assert outcomes == {"unknown": {"active": False}, "tampered": {"active": False}}


def test_another_clients_token_introspects_as_inactive(
    facade: FacadeHarness, resource_server: Registered, other_server: Registered
) -> None:
    token = facade.login(resource_server)["refresh_token"]
    response = client_post(facade, "introspect", {"token": token}, other_server)
    assert introspection(response) == {"active": False}


def test_revocation_answers_200_for_a_token_it_does_not_know(
    facade: FacadeHarness, resource_server: Registered, public: Registered
) -> None:
    wrapped = facade.login(public)["refresh_token"]
    tampered = wrapped[:-4] + ("AAAA" if not wrapped.endswith("AAAA") else "BBBB")
    outcomes = {}
    for client_name, client in (("public", public), ("confidential", resource_server)):
        for token_name, token in (("unknown", "no-such-token"), ("tampered", tampered)):
            response = client_post(facade, "revoke", {"token": token}, client)
            outcomes[f"{token_name} by {client_name}"] = response.status_code
    assert outcomes == dict.fromkeys(outcomes, 200)


def test_a_revoked_refresh_token_no_longer_refreshes(
    facade: FacadeHarness, resource_server: Registered, public: Registered
) -> None:
    for client, hint in ((public, {}), (resource_server, {"token_type_hint": "refresh_token"})):
        wrapped = facade.login(client)["refresh_token"]
        revoked = client_post(facade, "revoke", {"token": wrapped, **hint}, client)
        assert revoked.status_code == 200, revoked.text
        assert "no-store" in revoked.headers.get("cache-control", "")
        response = refresh(facade, client, wrapped)
        assert oauth_error(response) == "invalid_grant"


def test_revocation_authenticates_confidential_clients(facade: FacadeHarness, resource_server: Registered) -> None:
    wrapped = facade.login(resource_server)["refresh_token"]
    url = f"{FACADE_ISSUER}/oauth2/revoke"
    wrong = facade.request("POST", url, data={"token": wrapped}, auth=(resource_server.client_id, "wrong"))
    unauthenticated = facade.request("POST", url, data={"token": wrapped, "client_id": resource_server.client_id})
    assert oauth_error(wrong, 401) == "invalid_client"
    assert oauth_error(unauthenticated, 401) == "invalid_client"
    response = refresh(facade, resource_server, wrapped)
    assert response.status_code == 200, response.text


def test_revoking_another_clients_token_does_not_revoke_it(
    facade: FacadeHarness, public: Registered, other_server: Registered
) -> None:
    wrapped = facade.login(public)["refresh_token"]
    attempt = client_post(facade, "revoke", {"token": wrapped, "token_type_hint": "refresh_token"}, other_server)
    assert attempt.status_code in (200, 400), attempt.text
    response = refresh(facade, public, wrapped)
    assert response.status_code == 200, response.text


def test_revoking_an_access_token_is_answered_by_rfc_7009(facade: FacadeHarness, resource_server: Registered) -> None:
    token = facade.login(resource_server)["access_token"]
    response = client_post(facade, "revoke", {"token": token, "token_type_hint": "access_token"}, resource_server)
    # Revoked (200), or refused as a type this server cannot revoke (§2.2.1); never "try again later".
    if response.status_code != 200:
        assert oauth_error(response) == "unsupported_token_type"
