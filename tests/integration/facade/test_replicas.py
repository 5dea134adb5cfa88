"""The facade keeps no server-side state (DESIGN: everything is sealed with the shared sealing
keys): two authgate replicas with the same keys finish each other's flows, a code is still
redeemed only once across them (OAuth 2.1 draft 16 §4.1.3), and a replica with other keys
accepts nothing the others sealed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.support.facade import (
    FACADE_ISSUER,
    FacadeHarness,
    Registered,
    authorization_code,
    callback_url,
    client_post,
    code_grant,
    oauth_error,
    redirect_params,
    sealing_keys_file,
    shown_error,
)

GRANTS = ["authorization_code", "refresh_token"]


@pytest.fixture(scope="module")
def replicas(
    start_shared_facade: Callable[..., FacadeHarness], tmp_path_factory: pytest.TempPathFactory
) -> tuple[FacadeHarness, FacadeHarness, FacadeHarness]:
    """(a, b): the same sealing keys; c: keys of its own."""
    other_keys = sealing_keys_file(tmp_path_factory.mktemp("other-sealing") / "keys.json")
    return start_shared_facade(), start_shared_facade(), start_shared_facade(keys=other_keys)


@pytest.fixture(scope="module")
def client(replicas: tuple[FacadeHarness, ...]) -> Registered:
    a, _, _ = replicas
    return a.register(grant_types=GRANTS, token_endpoint_auth_method="client_secret_post")


def test_two_replicas_with_the_same_keys_finish_each_others_flows(replicas: tuple[FacadeHarness, ...]) -> None:
    a, b, _ = replicas
    client = a.register(grant_types=GRANTS)  # registered on A
    flow = b.start(client)  # authorization request and consent page on B
    assert flow.consent_page is not None and flow.consent_page.status_code == 200, flow.consent_page.text[:300]
    url = callback_url(b, a.decide(flow, "approve"), flow)  # the approval posted to A
    params = redirect_params(b.request("GET", url, cookies=flow.cookies))  # the callback on B
    assert "code" in sorted(params)
    issued = client_post(a, "token", code_grant(flow, params["code"]), client)  # the token from A
    assert issued.status_code == 200, issued.text
    refreshed = client_post(
        b, "token", {"grant_type": "refresh_token", "refresh_token": issued.json()["refresh_token"]}, client
    )
    assert refreshed.status_code == 200, refreshed.text  # refreshed on B
    revoked = client_post(a, "revoke", {"token": refreshed.json()["refresh_token"]}, client)
    assert revoked.status_code == 200, revoked.text
    after = client_post(
        b, "token", {"grant_type": "refresh_token", "refresh_token": refreshed.json()["refresh_token"]}, client
    )
    assert oauth_error(after) == "invalid_grant"  # revoked on A, refused on B


def test_a_code_redeemed_on_one_replica_is_refused_on_another(
    replicas: tuple[FacadeHarness, ...], client: Registered
) -> None:
    a, b, _ = replicas
    flow, code = authorization_code(a, client)
    first = client_post(a, "token", code_grant(flow, code), client)
    assert first.status_code == 200, first.text
    replay = client_post(b, "token", code_grant(flow, code), client)
    assert oauth_error(replay) == "invalid_grant"
    description = replay.json().get("error_description", "")
    assert "grant request is invalid" not in description, "the upstream's error_description was relayed"


def test_a_replica_with_other_keys_accepts_nothing_the_others_sealed(
    replicas: tuple[FacadeHarness, ...], client: Registered
) -> None:
    a, _, c = replicas
    # The client, at the authorization endpoint.
    unknown = c.request("GET", f"{FACADE_ISSUER}/oauth2/authorize", params=a.authorize_params(client)[0])
    shown_error(unknown)
    # A consent form and an upstream answer of A's.
    flow = a.start(client)
    shown_error(c.decide(flow, "approve"))
    url = callback_url(a, a.decide(flow, "approve"), flow)
    shown_error(c.request("GET", url, cookies=flow.cookies))
    # A code and a refresh token of A's: the client itself is unknown there.
    params = redirect_params(a.request("GET", url, cookies=flow.cookies))
    redeemed = client_post(c, "token", code_grant(flow, params["code"]), client)
    assert oauth_error(redeemed, 401) == "invalid_client"
    issued = client_post(a, "token", code_grant(flow, params["code"]), client)
    assert issued.status_code == 200, issued.text
    refreshed = client_post(
        c, "token", {"grant_type": "refresh_token", "refresh_token": issued.json()["refresh_token"]}, client
    )
    assert oauth_error(refreshed, 401) == "invalid_client"
