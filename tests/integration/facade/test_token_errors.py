"""Malformed requests to the token, introspection and revocation endpoints get a clear 4xx JSON
error, never a 5xx (OAuth 2.1 draft 16 §3.2, §3.2.4, §7.12; RFC 6749 §5.2), in the characters
OAuth allows; an upstream that is down is a 503 temporarily_unavailable, never a 500."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import pytest
from tests.infra.idp import OidcProvider, default_clients
from tests.infra.tls import TestCA
from tests.support.facade import (
    ERROR_TEXT,
    FACADE_ISSUER,
    FacadeHarness,
    Registered,
    authorization_code,
    client_post,
    code_grant,
    facade_policy,
    oauth_error,
    upstream_client_metadata,
)

ENDPOINTS = ("token", "introspect", "revoke")
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def client(facade: FacadeHarness) -> Registered:
    return facade.register(token_endpoint_auth_method="client_secret_post")


def post(facade: FacadeHarness, endpoint: str, body: bytes | str, content_type: str | None = FORM, **kwargs):
    headers = {"Content-Type": content_type} if content_type is not None else {}
    headers |= kwargs.pop("headers", {})
    return facade.request("POST", f"{FACADE_ISSUER}/oauth2/{endpoint}", content=body, headers=headers, **kwargs)


def assert_allowed_characters(response) -> None:
    body = response.json()
    for field in ("error", "error_description"):
        if field in body:
            assert ERROR_TEXT.fullmatch(body[field]), f"{field} has characters OAuth does not allow: {body[field]!r}"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_body_that_is_not_form_encoded_is_a_400_json_error(
    facade: FacadeHarness, client: Registered, endpoint: str
) -> None:
    form = f"grant_type=refresh_token&token=x&client_id={client.client_id}&client_secret={client.client_secret}"
    for content_type, body in (
        ("application/json", '{"grant_type": "refresh_token", "token": "x"}'),
        ("text/plain", form),
        ("multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--x--\r\n"),
        (None, form),
        ("application/x-www-form-urlencodedx", form),
    ):
        response = post(facade, endpoint, body, content_type)
        assert oauth_error(response) == "invalid_request", content_type
        assert_allowed_characters(response)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_body_over_16_kib_is_refused_with_a_json_error(facade: FacadeHarness, endpoint: str) -> None:
    body = "grant_type=refresh_token&token=x&padding=" + "a" * (16 * 1024)
    oauth_error(post(facade, endpoint, body), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size shows only while reading
        for _ in range(20):
            yield b"a" * 1024

    oauth_error(post(facade, endpoint, chunks()), 413)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_non_ascii_body_is_a_400_json_error(facade: FacadeHarness, client: Registered, endpoint: str) -> None:
    for body in ("grant_type=refresh_token&token=é".encode(), b"grant_type=\xff\xfe&token=x", b"token=\x00\x80"):
        response = post(facade, endpoint, body)
        assert oauth_error(response) == "invalid_request", body
        assert_allowed_characters(response)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_garbage_authorization_header_is_a_401_json_error(facade: FacadeHarness, endpoint: str) -> None:
    for authorization in (
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode(),
        "Bearer abc",
        "Digest username=x",
        "Basic " + base64.b64encode(b"x" * 4000 + b":y").decode(),
    ):
        response = post(facade, endpoint, "grant_type=refresh_token&token=x", headers={"Authorization": authorization})
        assert oauth_error(response, 401) == "invalid_client", authorization[:20]
        assert response.headers.get("www-authenticate", "").lower().startswith("basic")
        assert_allowed_characters(response)


def test_the_token_endpoint_answers_only_post(facade: FacadeHarness) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = facade.request(method, f"{FACADE_ISSUER}/oauth2/token?grant_type=authorization_code&code=x")
        assert 400 <= response.status_code < 500, method
        assert response.headers.get("content-type", "").startswith("application/json"), method


def test_error_fields_use_only_the_characters_oauth_allows(facade: FacadeHarness, client: Registered) -> None:
    # Parameter names chosen by the caller, sent twice: the error names them.
    outside = []
    for body in ("a%22b=1&a%22b=2", "%C3%A9=1&%C3%A9=2", "a%5Cb=1&a%5Cb=2", "x%0Ay=1&x%0Ay=2"):
        response = post(facade, "token", f"grant_type=authorization_code&{body}")
        assert oauth_error(response) == "invalid_request"
        description = response.json().get("error_description", "")
        if not ERROR_TEXT.fullmatch(description):
            outside.append(description)
    assert outside == [], "error_description with characters outside %x20-21 / %x23-5B / %x5D-7E"


@pytest.fixture
def fragile_idp(pki: TestCA, tmp_path) -> Iterator[OidcProvider]:
    """An upstream of its own, for the test that stops it."""
    with OidcProvider(tmp_path / "fragile-idp", ca=pki, clients=[*default_clients(), upstream_client_metadata()]) as p:
        yield p


def test_an_unreachable_upstream_is_a_503_temporarily_unavailable(
    start_shared_facade: Callable[..., FacadeHarness], fragile_idp: OidcProvider
) -> None:
    facade = start_shared_facade(facade_policy(fragile_idp.issuer), upstream=fragile_idp)
    client = facade.register(
        token_endpoint_auth_method="client_secret_post", grant_types=["authorization_code", "refresh_token"]
    )
    flow, code = authorization_code(facade, client)
    issued = client_post(facade, "token", code_grant(flow, code), client)
    assert issued.status_code == 200, issued.text
    refresh_token = issued.json()["refresh_token"]
    pending_flow, pending_code = authorization_code(facade, client)
    fragile_idp.stop()
    responses = {
        "code": client_post(facade, "token", code_grant(pending_flow, pending_code), client),
        "refresh": client_post(
            facade, "token", {"grant_type": "refresh_token", "refresh_token": refresh_token}, client
        ),
        "introspect": client_post(facade, "introspect", {"token": refresh_token}, client),
        "revoke": client_post(facade, "revoke", {"token": refresh_token}, client),
    }
    for name, response in responses.items():
        assert oauth_error(response, 503) == "temporarily_unavailable", name
        assert_allowed_characters(response)
