"""Client authentication at the token endpoint (OAuth 2.1 draft 16 §2.4, §2.4.1, §3.2.1, §3.2.4,
§4.1.3; RFC 6749 §2.3.1, §5.2): a confidential client authenticates exactly as it registered
(client_secret_basic or client_secret_post), a failure is a 401 invalid_client with a Basic
challenge when Basic was tried, and guessing secrets is throttled wherever they are checked."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.support.facade import (
    FACADE_ISSUER,
    FacadeHarness,
    Registered,
    authorization_code,
    client_post,
    code_grant,
    oauth_error,
)

GUESSES = 160  # more than the token endpoint's burst of 100 per client address


@pytest.fixture(scope="module")
def basic(facade: FacadeHarness) -> Registered:
    return facade.register(token_endpoint_auth_method="client_secret_basic")


@pytest.fixture(scope="module")
def post(facade: FacadeHarness) -> Registered:
    return facade.register(token_endpoint_auth_method="client_secret_post")


@pytest.fixture(scope="module")
def public(facade: FacadeHarness) -> Registered:
    return facade.register()


def token(facade: FacadeHarness, data: dict[str, str], **kwargs):
    return facade.request("POST", f"{FACADE_ISSUER}/oauth2/token", data=data, **kwargs)


def assert_invalid_client(response, basic_tried: bool) -> None:
    assert oauth_error(response, 401) == "invalid_client"
    if basic_tried:
        assert response.headers.get("www-authenticate", "").lower().startswith("basic"), response.headers


def test_a_confidential_client_authenticates_with_client_secret_basic(facade: FacadeHarness, basic: Registered) -> None:
    flow, code = authorization_code(facade, basic)
    response = token(facade, code_grant(flow, code), auth=(basic.client_id, basic.client_secret))
    assert response.status_code == 200, response.text


def test_a_confidential_client_authenticates_with_client_secret_post(facade: FacadeHarness, post: Registered) -> None:
    flow, code = authorization_code(facade, post)
    data = code_grant(flow, code) | {"client_id": post.client_id, "client_secret": post.client_secret or ""}
    response = token(facade, data)
    assert response.status_code == 200, response.text


def test_a_confidential_client_that_does_not_authenticate_is_refused(
    facade: FacadeHarness, basic: Registered, post: Registered
) -> None:
    for client in (basic, post):
        flow, code = authorization_code(facade, client)
        assert_invalid_client(token(facade, code_grant(flow, code, client_id=client.client_id)), basic_tried=False)
        assert_invalid_client(token(facade, code_grant(flow, code)), basic_tried=False)
        response = client_post(facade, "token", code_grant(flow, code), client)
        assert response.status_code == 200, response.text


def test_a_client_authenticates_only_with_the_method_it_registered(
    facade: FacadeHarness, basic: Registered, post: Registered, public: Registered
) -> None:
    flow, code = authorization_code(facade, basic)
    as_post = code_grant(flow, code, client_id=basic.client_id, client_secret=basic.client_secret or "")
    assert_invalid_client(token(facade, as_post), basic_tried=False)
    flow, code = authorization_code(facade, post)
    assert_invalid_client(token(facade, code_grant(flow, code), auth=(post.client_id, post.client_secret)), True)
    flow, code = authorization_code(facade, public)
    assert_invalid_client(token(facade, code_grant(flow, code), auth=(public.client_id, "anything")), True)
    with_secret = code_grant(flow, code, client_id=public.client_id, client_secret="anything")
    assert_invalid_client(token(facade, with_secret), basic_tried=False)


def test_a_wrong_secret_over_basic_is_a_401_with_a_basic_challenge(
    facade: FacadeHarness, basic: Registered, post: Registered
) -> None:
    flow, code = authorization_code(facade, basic)
    for secret in ("wrong", "", post.client_secret or "", (basic.client_secret or "")[:-1]):
        assert_invalid_client(token(facade, code_grant(flow, code), auth=(basic.client_id, secret)), True)
    # The id of one client with the secret of another.
    assert_invalid_client(token(facade, code_grant(flow, code), auth=(post.client_id, basic.client_secret)), True)


def test_a_wrong_secret_in_the_body_is_invalid_client(facade: FacadeHarness, post: Registered) -> None:
    flow, code = authorization_code(facade, post)
    for secret in ("wrong", "", (post.client_secret or "").upper()):
        data = code_grant(flow, code, client_id=post.client_id, client_secret=secret)
        assert_invalid_client(token(facade, data), basic_tried=False)


def test_a_client_secret_in_the_request_uri_is_not_accepted(facade: FacadeHarness, post: Registered) -> None:
    flow, code = authorization_code(facade, post)
    query = {"client_id": post.client_id, "client_secret": post.client_secret or ""}
    response = token(facade, code_grant(flow, code, client_id=post.client_id), params=query)
    assert_invalid_client(response, basic_tried=False)


def test_more_than_one_authentication_method_is_refused(facade: FacadeHarness, basic: Registered) -> None:
    flow, code = authorization_code(facade, basic)
    data = code_grant(flow, code, client_id=basic.client_id, client_secret=basic.client_secret or "")
    response = token(facade, data, auth=(basic.client_id, basic.client_secret))
    assert response.status_code in (400, 401), response.status_code
    assert oauth_error(response, response.status_code) in ("invalid_request", "invalid_client")


def test_guessing_client_secrets_is_throttled_at_every_endpoint_that_checks_them(
    start_facade: Callable[..., FacadeHarness],
) -> None:
    facade = start_facade()  # its own replica: the limits it reaches stay with it
    victim = facade.register(token_endpoint_auth_method="client_secret_basic")
    unthrottled = []
    for endpoint in ("token", "introspect", "revoke"):
        statuses = [
            facade.request(
                "POST",
                f"{FACADE_ISSUER}/oauth2/{endpoint}",
                data={"grant_type": "refresh_token", "refresh_token": "x", "token": "x"},
                auth=(victim.client_id, f"guess-{n}"),
            ).status_code
            for n in range(GUESSES)
        ]
        assert set(statuses) <= {401, 429}, (endpoint, sorted(set(statuses)))
        if 429 not in statuses:
            unthrottled.append(endpoint)
    assert unthrottled == [], f"{GUESSES} wrong secrets in a row were all checked at {unthrottled}"
