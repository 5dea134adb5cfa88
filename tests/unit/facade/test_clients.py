"""Client ID Metadata Documents and token-endpoint client credentials."""

import base64

import pytest

from authgate.errors import ClientError
from authgate.facade.clients import _basic_credentials, document_metadata, is_document_url

URL = "https://app.example.com/oauth/client.json"
SCOPES = frozenset({"mcp:read", "offline_access"})


def document(**overrides):
    body = {"client_id": URL, "client_name": "App", "redirect_uris": ["http://127.0.0.1/cb"]}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize(
    ("client_id", "expected"),
    [
        (URL, True),
        ("https://app.example.com", False),  # no path
        ("https://app.example.com/", False),
        ("http://app.example.com/client.json", False),
        ("eyJhbGciOiJkaXIi.x.y.z.w", False),
    ],
)
def test_only_an_https_url_with_a_path_is_a_metadata_document(client_id, expected):
    assert is_document_url(client_id) is expected


def test_a_metadata_document_that_names_itself_is_a_public_native_client():
    metadata = document_metadata(URL, document(), SCOPES)
    assert metadata["token_endpoint_auth_method"] == "none"
    assert metadata["application_type"] == "native"
    assert metadata["redirect_uris"] == ["http://127.0.0.1/cb"]


@pytest.mark.parametrize(
    "body",
    [
        document(client_id="https://evil.example.com/client.json"),
        document(client_id=None),
        document(client_secret="s3cret"),
        document(token_endpoint_auth_method="client_secret_basic"),
        document(redirect_uris=["javascript:alert(1)"]),
        document(redirect_uris=["https://app.example.com/cb#frag"]),
        document(scope="admin"),
    ],
)
def test_a_bad_metadata_document_is_refused(body):
    with pytest.raises(ClientError):
        document_metadata(URL, body, SCOPES)


def _basic(value: str) -> str:
    return "Basic " + base64.b64encode(value.encode()).decode()


def test_basic_credentials_are_form_decoded():
    assert _basic_credentials(_basic("my%20client:p%3Ass+word")) == ("my client", "p:ss word")


@pytest.mark.parametrize("header", ["Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer abc"])
def test_malformed_basic_credentials_are_none(header):
    assert _basic_credentials(header) is None
