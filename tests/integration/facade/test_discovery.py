"""Authorization server metadata of the facade (RFC 8414, OpenID Connect Discovery 1.0 as the
MCP authorization spec uses it, RFC 9207 §2.3/§3, the CIMD draft §5), for an issuer at the root
of its host and for one with a path, and CORS on the endpoints browser-based clients call.

MCP 2025-11-25 "Authorization Server Metadata Discovery" and MCP 2026-07-28
"authorization-server-discovery" list the URLs an MCP client tries, in order; the facade must
answer at each of them with the same document, whose `issuer` is exactly the issuer the URL
was built from (RFC 8414 §3.3), and must answer nowhere else for that issuer.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from tests.infra.idp import RESOURCES_BY_ALG, OidcProvider
from tests.support.facade import (
    FACADE_ISSUER,
    FacadeHarness,
    facade_from,
    facade_policy,
    facade_policy_document,
    loopback_address,
)

ROOT = FACADE_ISSUER  # https://mcp.example.com
TENANT = "https://es256.example.com/tenant1"  # an issuer with a path
INSPECTOR = "https://inspector.example.com"

# (issuer, the metadata URL an MCP client builds from it), in the order the MCP spec lists them.
LOCATIONS = [
    (ROOT, f"{ROOT}/.well-known/oauth-authorization-server"),
    (ROOT, f"{ROOT}/.well-known/openid-configuration"),
    (TENANT, "https://es256.example.com/.well-known/oauth-authorization-server/tenant1"),
    (TENANT, "https://es256.example.com/.well-known/openid-configuration/tenant1"),
    (TENANT, f"{TENANT}/.well-known/openid-configuration"),
]
LOCATION_IDS = ["root-rfc8414", "root-oidc", "path-rfc8414-inserted", "path-oidc-inserted", "path-oidc-appended"]
OIDC_LOCATIONS = [(issuer, url) for issuer, url in LOCATIONS if "openid-configuration" in url]
# URLs an MCP client would build from *another* issuer: answering them with one of these two
# documents would hand the client a metadata document whose issuer is not the one it asked.
FOREIGN = [
    "https://es256.example.com/.well-known/oauth-authorization-server",  # issuer https://es256.example.com
    "https://es256.example.com/.well-known/openid-configuration",
    "https://es256.example.com/.well-known/oauth-authorization-server/tenant2",
    f"{ROOT}/.well-known/oauth-authorization-server/tenant1",  # issuer https://mcp.example.com/tenant1
    f"{ROOT}/tenant1/.well-known/openid-configuration",
]


@pytest.fixture(scope="module")
def gate(start_shared_facade, idp: OidcProvider) -> FacadeHarness:
    """One authgate, two facades: at the root of mcp.example.com (CORS for the inspector), and
    at https://es256.example.com/tenant1 with registration and metadata documents turned off."""
    tenant = facade_policy_document(
        idp.issuer,
        name="tenant",
        uid="0b5e7c1e-0000-4000-8000-0000000000d1",
        resource=RESOURCES_BY_ALG["ES256"],
        facade_issuer=TENANT,
        extra_facade="    dynamicRegistration: false\n    clientMetadataDocuments: false",
    )
    root = facade_policy(idp.issuer, extra_spec=f"  cors: {{allowedOrigins: [{INSPECTOR}]}}")
    return start_shared_facade(f"{root}---\n{tenant}")


@pytest.fixture
def facade(gate: FacadeHarness) -> Iterator[FacadeHarness]:
    harness = facade_from(gate, loopback_address())
    yield harness
    harness.close()


def get(facade: FacadeHarness, url: str, **kwargs) -> httpx.Response:
    """GET an https://<facade host>/... URL on the public port, with that Host."""
    host = urlsplit(url).netloc
    path = url[len(f"https://{host}") :]
    return facade.http.get(path, headers={"Host": host, **kwargs.pop("headers", {})}, **kwargs)


def metadata(facade: FacadeHarness, url: str) -> dict:
    response = get(facade, url)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:200]}"
    return response.json()


@pytest.mark.parametrize(("issuer", "url"), LOCATIONS, ids=LOCATION_IDS)
def test_mcp_authorization_server_provides_metadata_at_every_location_clients_try(
    facade: FacadeHarness, issuer: str, url: str
) -> None:
    """MCP 2025-11-25 / 2026-07-28 Overview 5: an authorization server MUST provide RFC 8414
    metadata or OpenID Connect Discovery; clients try these URLs (RFC 8414 §3.2: 200, JSON)."""
    response = get(facade, url)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:200]}"
    assert response.headers["content-type"].split(";")[0].strip() == "application/json"
    assert isinstance(response.json(), dict)


@pytest.mark.parametrize(("issuer", "url"), LOCATIONS, ids=LOCATION_IDS)
def test_rfc8414_issuer_is_identical_to_the_issuer_the_metadata_url_was_built_from(
    facade: FacadeHarness, issuer: str, url: str
) -> None:
    """RFC 8414 §3.3 (and MCP 2026-07-28 discovery): `issuer` MUST be identical to the issuer
    the well-known URL was built from, or the client MUST NOT use the document."""
    document = metadata(facade, url)
    assert document["issuer"] == issuer
    # Every location serves the one document of that issuer.
    first = next(u for i, u in LOCATIONS if i == issuer)
    assert document == metadata(facade, first)


@pytest.mark.parametrize("url", FOREIGN)
def test_rfc8414_no_metadata_is_served_for_an_issuer_the_facade_is_not(facade: FacadeHarness, url: str) -> None:
    """RFC 8414 §3.3: a document fetched for issuer X that names issuer Y MUST NOT be used, so
    the facade must not answer the URLs of issuers it is not (no root fallback for a path issuer)."""
    response = get(facade, url)
    assert response.status_code == 404, f"{url}: {response.status_code} {response.text[:200]}"


@pytest.mark.parametrize("issuer", [ROOT, TENANT], ids=["root", "path"])
def test_rfc8414_metadata_has_the_required_fields(facade: FacadeHarness, issuer: str) -> None:
    """RFC 8414 §2: issuer (https, no query or fragment), authorization_endpoint and
    token_endpoint (the code grant uses both), response_types_supported are REQUIRED."""
    document = metadata(facade, next(u for i, u in LOCATIONS if i == issuer))
    parts = urlsplit(document["issuer"])
    assert parts.scheme == "https" and parts.netloc and not parts.query and not parts.fragment
    assert "#" not in document["issuer"] and "?" not in document["issuer"]
    assert document["authorization_endpoint"] == f"{issuer}/oauth2/authorize"
    assert document["token_endpoint"] == f"{issuer}/oauth2/token"
    assert "code" in document["response_types_supported"]


@pytest.mark.parametrize("issuer", [ROOT, TENANT], ids=["root", "path"])
def test_rfc8414_claims_with_zero_elements_are_omitted(facade: FacadeHarness, issuer: str) -> None:
    """RFC 8414 §3.2: claims with zero elements MUST be omitted (nor sent as null)."""
    document = metadata(facade, next(u for i, u in LOCATIONS if i == issuer))
    empty = sorted(name for name, value in document.items() if value in ([], None, "", {}))
    assert empty == [], f"claims with no value: {empty}"


@pytest.mark.parametrize(("issuer", "url"), LOCATIONS, ids=LOCATION_IDS)
def test_mcp_metadata_includes_code_challenge_methods_supported_with_s256(
    facade: FacadeHarness, issuer: str, url: str
) -> None:
    """MCP 2025-11-25 "Authorization Code Protection" / 2026-07-28 security considerations:
    authorization servers providing OpenID Connect Discovery MUST include
    code_challenge_methods_supported (clients refuse to proceed without it, also for RFC 8414)."""
    methods = metadata(facade, url).get("code_challenge_methods_supported")
    assert isinstance(methods, list) and "S256" in methods, methods


@pytest.mark.parametrize("issuer", [ROOT, TENANT], ids=["root", "path"])
def test_rfc9207_metadata_advertises_the_iss_authorization_response_parameter(
    facade: FacadeHarness, issuer: str
) -> None:
    """RFC 9207 §2.3 and MCP 2026-07-28 "Authorization Response Validation": a server that
    includes `iss` in authorization responses MUST set authorization_response_iss_parameter_supported
    to true (the facade always does; test_mcp_spec checks the responses)."""
    document = metadata(facade, next(u for i, u in LOCATIONS if i == issuer))
    assert document.get("authorization_response_iss_parameter_supported") is True


@pytest.mark.parametrize(("issuer", "supported"), [(ROOT, True), (TENANT, False)], ids=["enabled", "disabled"])
def test_cimd_metadata_includes_client_id_metadata_document_supported(
    facade: FacadeHarness, issuer: str, supported: bool
) -> None:
    """draft-ietf-oauth-client-id-metadata-document-00 §5: authorization servers that publish
    RFC 8414 metadata MUST include client_id_metadata_document_supported (true where the policy
    accepts URL client_ids, false where `clientMetadataDocuments: false`)."""
    document = metadata(facade, next(u for i, u in LOCATIONS if i == issuer))
    assert document.get("client_id_metadata_document_supported") is supported


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/.well-known/oauth-authorization-server", {}),
        ("GET", "/.well-known/openid-configuration", {}),
        ("POST", "/oauth2/register", {"json": {"redirect_uris": ["http://127.0.0.1/cb"], "client_name": "cors"}}),
        ("POST", "/oauth2/token", {"data": {"grant_type": "authorization_code", "code": "x", "client_id": "x"}}),
    ],
    ids=["metadata", "openid-configuration", "register", "token"],
)
def test_cors_answers_the_policys_allowed_origins_on_metadata_register_and_token(
    facade: FacadeHarness, method: str, path: str, kwargs: dict
) -> None:
    """spec.cors (DESIGN: "preflights pass; facade answers CORS"): browser-based MCP clients
    (the MCP Inspector) read metadata, register and redeem codes cross-origin; any other
    origin gets no Access-Control-Allow-Origin."""
    preflight = facade.http.options(
        path,
        headers={
            "Host": "mcp.example.com",
            "Origin": INSPECTOR,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code in (200, 204), preflight.status_code
    assert preflight.headers.get("access-control-allow-origin") == INSPECTOR
    assert method in preflight.headers.get("access-control-allow-methods", "")
    assert "content-type" in preflight.headers.get("access-control-allow-headers", "").lower()

    actual = facade.http.request(method, path, headers={"Host": "mcp.example.com", "Origin": INSPECTOR}, **kwargs)
    assert actual.status_code < 500, actual.status_code
    assert actual.headers.get("access-control-allow-origin") == INSPECTOR, (actual.status_code, actual.headers)

    stranger = "https://evil.example"
    refused = facade.http.options(
        path, headers={"Host": "mcp.example.com", "Origin": stranger, "Access-Control-Request-Method": method}
    )
    assert "access-control-allow-origin" not in refused.headers
    other = facade.http.request(method, path, headers={"Host": "mcp.example.com", "Origin": stranger}, **kwargs)
    assert "access-control-allow-origin" not in other.headers
