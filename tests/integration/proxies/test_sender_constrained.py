"""Sender-constrained tokens through the real proxies: DPoP (RFC 9449) and certificate-bound
tokens (RFC 8705 §3), with tokens the real oidc-provider bound.

One oidc-provider (DPoP proofs in ES256, EdDSA and RS256 at its token endpoint; its RFC 8705
listener binding `BOUND_CLIENT`'s tokens to its certificate) and one echo app serve the
module. Each example proxy runs as shipped (tests/infra only moves its ports and TLS files)
with a TLS listener whose server and client certificates come from the module's CA, in front
of its own `authgate serve`: the trusted certificate header is service configuration, one
per process, and every proxy writes a different one (tests/support/sender_constrained.py).
Clients speak https to the proxy with SNI and Host mcp.example.com, so every proof's `htu`
is https://mcp.example.com/..., whichever dialect carries it.

What each test proves is in its name; the forgeries a resource server must refuse are in
BAD_PROOFS. The certificate header forged by a client is tested two ways: authgate behind
each proxy refuses a stolen certificate-bound token whatever copy of the header the client
sends, and a recorder in authgate's place (an echo server for nginx, Envoy HTTP and
Traefik, a gRPC ext_authz server for both Envoy gRPC forms) shows what each proxy really
sent to the check, over https and plain http, with and without a client certificate.

Straight at check ports (no proxy): the trusted header's formats, malformed ones (400), no
header trusted by default, gRPC's peer certificate, two replicas sharing nonces (and
nonce expiry: a policy's shortest nonce lifetime is 10 s), a full replay cache.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import HealthServicer
from jwcrypto import jwk, jws
from tests.infra.availability import require_tool
from tests.infra.idp import (
    BOUND_CLIENT_CN,
    DPOP_CLIENT,
    RESOURCES_BY_ALG,
    OidcProvider,
    install_problem,
)
from tests.infra.nginx import Nginx
from tests.infra.tls import IssuedCert, TestCA
from tests.infra.upstream import EchoUpstream
from tests.support import proxy_cases
from tests.support.authgate import Authgate
from tests.support.dpop import (
    ProofKey,
    access_token_hash,
    certificate_hex_hash,
    certificate_thumbprint,
    dpop_headers,
)
from tests.support.facade import sealing_keys_file
from tests.support.leaks import MINTED_TOKENS, assert_clean_log, assert_no_token_in
from tests.support.sender_constrained import (
    CERT_HEADERS,
    HOST,
    ORIGIN,
    PROOF_ALGORITHMS,
    PROXIES,
    RESOURCE,
    SecureEdge,
    challenge_error,
    challenges,
    forged_cert_header,
    policies,
)

pytestmark = pytest.mark.integration

assert RESOURCES_BY_ALG["RS256"] == RESOURCE  # the IdP's tokens for RESOURCE
SHORT_NONCE_SECONDS = 10  # the shortest nonce lifetime a policy may set
METADATA_URL = f"{ORIGIN}/.well-known/oauth-protected-resource/mcp"


def claims(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


# -- fixtures: the IdP, keys, tokens and certificates once per module -------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("sender-pki"))


@pytest.fixture(scope="module")
def idp(pki: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    require_tool(install_problem())
    with OidcProvider(
        tmp_path_factory.mktemp("sender-idp"),
        ca=pki,
        mtls=True,
        certificate_bound=True,
        dpop_algorithms=list(PROOF_ALGORITHMS),
    ) as provider:
        yield provider


@pytest.fixture(scope="module")
def proof_keys() -> dict[str, ProofKey]:
    return {alg: ProofKey.generate(alg) for alg in PROOF_ALGORITHMS}


@pytest.fixture(scope="module")
def dpop_tokens(idp: OidcProvider, proof_keys: dict[str, ProofKey]) -> dict[str, str]:
    """A DPoP-bound access token (scope mcp:read) per proof key, bound by the IdP itself."""
    tokens = {}
    for alg, key in proof_keys.items():
        body = idp.dpop_token(
            DPOP_CLIENT,
            RESOURCE,
            proof=lambda htm, htu, nonce, key=key: key.proof(htm, htu, nonce=nonce),
            scope="mcp:read",
        )
        assert body["token_type"] == "DPoP"
        token = body["access_token"]
        MINTED_TOKENS.add(token)
        assert claims(token)["cnf"] == {"jkt": key.thumbprint}
        tokens[alg] = token
    return tokens


@pytest.fixture(scope="module")
def bearer_token(idp: OidcProvider) -> str:
    return proxy_cases.service_token(idp, RESOURCE)


@pytest.fixture(scope="module")
def client_cert(pki: TestCA) -> IssuedCert:
    """The certificate BOUND_CLIENT authenticates with, and its tokens are bound to."""
    return pki.issue_client_cert("bound-client", common_name=BOUND_CLIENT_CN)


@pytest.fixture(scope="module")
def other_cert(pki: TestCA) -> IssuedCert:
    """A valid client certificate of the same CA, held by someone else."""
    return pki.issue_client_cert("other-client", common_name="other-client")


@pytest.fixture(scope="module")
def cert_token(idp: OidcProvider, client_cert: IssuedCert) -> str:
    body = idp.certificate_bound_token(client_cert, RESOURCE, scope="mcp:read")
    token = body["access_token"]
    MINTED_TOKENS.add(token)
    assert claims(token)["cnf"] == {"x5t#S256": certificate_thumbprint(client_cert.cert)}
    return token


@pytest.fixture(scope="module")
def doubly_bound_token(
    idp: OidcProvider, cert_token: str, client_cert: IssuedCert, proof_keys: dict[str, ProofKey]
) -> str:
    """`cert_token` also bound to the ES256 proof key: oidc-provider refuses to bind one token
    both ways ("multiple proof-of-possession mechanisms are not allowed"), so this one is
    signed here with the IdP's own RS256 key (its kid), as an IdP that does would."""
    private = next(k for k in json.loads(Path(idp.config["jwksPath"]).read_text())["keys"] if k["alg"] == "RS256")
    payload = claims(cert_token)
    payload["cnf"] = {"x5t#S256": certificate_thumbprint(client_cert.cert), "jkt": proof_keys["ES256"].thumbprint}
    signed = jws.JWS(json.dumps(payload).encode())
    header = {"alg": "RS256", "typ": "at+jwt", "kid": private["kid"]}
    signed.add_signature(jwk.JWK(**private), alg="RS256", protected=json.dumps(header))
    token = signed.serialize(compact=True)
    MINTED_TOKENS.add(token)
    return token


@pytest.fixture(scope="module")
def sealing_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sealing_keys_file(tmp_path_factory.mktemp("sender-sealing") / "keys.json")


def start_authgate(
    directory: Path,
    idp: OidcProvider,
    pki: TestCA,
    sealing_keys: Path,
    cert_header: str | None,
    name: str = "authgate",
    extra: tuple[str, ...] = (),
) -> Authgate:
    """`authgate serve` with the module's policies, trusting `cert_header` (None: no header)."""
    args = ["--ca-bundle", str(pki.ca_path), "--egress-allow", "127.0.0.1", "--sealing-keys", str(sealing_keys)]
    args += extra
    if cert_header is not None:
        args += ["--client-cert-header", cert_header]
    policy = policies(idp.issuer, short_nonce_seconds=SHORT_NONCE_SECONDS)
    return Authgate(directory, policy, args, name=name).start()


@pytest.fixture(scope="module", params=PROXIES)
def edge(
    request: pytest.FixtureRequest,
    idp: OidcProvider,
    pki: TestCA,
    sealing_keys: Path,
    app: EchoUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SecureEdge]:
    """The example proxy `request.param` over TLS, in front of its own authgate."""
    name = request.param
    proxy_cases.require_proxy(name)
    work_dir = Path(tmp_path_factory.mktemp(f"sender-{name}"))
    authgate = start_authgate(work_dir / "authgate", idp, pki, sealing_keys, CERT_HEADERS[name])
    try:
        proxy = proxy_cases.example_proxy(name, work_dir / "proxy", authgate, app, ca=pki)
        with proxy:
            secure = SecureEdge(name, proxy, authgate, app, pki)
            yield secure
            secure.close()
        assert proxy.process is not None
        assert_no_token_in(proxy.process.read_log(), f"the {name} log")
        if isinstance(proxy, Nginx) and proxy.access_log.exists():
            assert_no_token_in(proxy.access_log.read_text(errors="replace"), "the nginx access log")
    finally:
        authgate.stop()
    assert_clean_log(authgate.log(), str(authgate.process.log_path))


def dpop_request(
    edge: SecureEdge,
    path: str,
    token: str,
    key: ProofKey,
    *,
    method: str = "GET",
    cert: IssuedCert | None = None,
    **proof: Any,
) -> httpx.Response:
    """`path` with `Authorization: DPoP token` and a proof by `key` for it (the `htu` is
    the request's URL without the query unless `proof` names another)."""
    htu = proof.pop("htu", f"{ORIGIN}{path.split('?', 1)[0]}")
    htm = proof.pop("htm", method)
    return edge.request(
        path, method=method, headers=dpop_headers(token, key.proof(htm, htu, access_token=token, **proof)), cert=cert
    )


def assert_refused(response: httpx.Response, edge: SecureEdge, error: str) -> None:
    """401 with `error` in the one WWW-Authenticate field and in the body; nothing at the app."""
    assert response.status_code == 401, response.text
    assert challenge_error(response) == error, response.headers.get_list("www-authenticate")
    assert response.json()["error"] == error
    assert edge.new_app_requests() == []


def assert_reached_app(response: httpx.Response, edge: SecureEdge) -> dict:
    assert response.status_code == 200, (response.status_code, response.headers, response.text)
    [echoed] = edge.new_app_requests()
    return echoed


# -- allow -----------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", PROOF_ALGORITHMS)
def test_dpop_bound_token_with_a_good_proof_reaches_the_app(
    edge: SecureEdge, dpop_tokens: dict[str, str], proof_keys: dict[str, ProofKey], alg: str
) -> None:
    token = dpop_tokens[alg]
    echoed = assert_reached_app(dpop_request(edge, "/mcp/tools?cursor=2", token, proof_keys[alg]), edge)

    assert echoed["path"] == "/mcp/tools"
    assert echoed["headers"]["x-auth-subject"] == DPOP_CLIENT.client_id
    assert echoed["headers"]["x-auth-roles"] == "reader"


@pytest.mark.parametrize(
    "htu",
    [
        "HTTPS://MCP.Example.COM/mcp/tools",  # scheme and host case
        "https://mcp.example.com:443/mcp/tools",  # default port
        "https://mcp.example.com/mcp/./x/../tools",  # dot-segments
        "https://mcp.example.com/mcp/%74ools",  # percent-encoded unreserved character
        "https://mcp.example.com/mcp/tools?other=query#fragment",  # query and fragment ignored
    ],
)
def test_htu_is_compared_after_normalization(
    edge: SecureEdge, dpop_tokens: dict[str, str], proof_keys: dict[str, ProofKey], htu: str
) -> None:
    response = dpop_request(edge, "/mcp/tools?cursor=2", dpop_tokens["ES256"], proof_keys["ES256"], htu=htu)
    assert_reached_app(response, edge)


def test_post_with_a_post_proof_reaches_the_app(
    edge: SecureEdge, dpop_tokens: dict[str, str], proof_keys: dict[str, ProofKey]
) -> None:
    response = dpop_request(edge, "/mcp", dpop_tokens["EdDSA"], proof_keys["EdDSA"], method="POST")
    assert assert_reached_app(response, edge)["method"] == "POST"


def test_dpop_scheme_is_case_insensitive(
    edge: SecureEdge, dpop_tokens: dict[str, str], proof_keys: dict[str, ProofKey]
) -> None:
    """RFC 9110 §11.1: auth schemes compare case-insensitively (`dpop`, `DPOP`)."""
    token, key = dpop_tokens["ES256"], proof_keys["ES256"]
    for scheme in ("dpop", "DPOP"):
        proof = key.proof("GET", f"{ORIGIN}/mcp", access_token=token)
        headers = [("Authorization", f"{scheme} {token}"), ("DPoP", proof)]
        assert_reached_app(edge.request("/mcp", headers=headers), edge)


def test_token_bound_to_a_certificate_and_a_key_needs_both(
    edge: SecureEdge, doubly_bound_token: str, proof_keys: dict[str, ProofKey], client_cert: IssuedCert
) -> None:
    token, key = doubly_bound_token, proof_keys["ES256"]
    assert_reached_app(dpop_request(edge, "/mcp", token, key, cert=client_cert), edge)

    assert_refused(dpop_request(edge, "/mcp", token, key), edge, "invalid_token")  # no certificate
    bearer = edge.request("/mcp", headers=[("Authorization", f"Bearer {token}")], cert=client_cert)
    assert_refused(bearer, edge, "invalid_token")  # no proof


def test_unbound_bearer_token_passes_where_binding_is_optional(edge: SecureEdge, bearer_token: str) -> None:
    assert_reached_app(edge.request("/mcp", headers=[("Authorization", f"Bearer {bearer_token}")]), edge)


def test_certificate_bound_token_with_its_certificate_reaches_the_app(
    edge: SecureEdge, cert_token: str, client_cert: IssuedCert
) -> None:
    response = edge.request("/mcp", headers=[("Authorization", f"Bearer {cert_token}")], cert=client_cert)
    assert assert_reached_app(response, edge)["headers"]["x-auth-subject"] == "bound-service"


# -- DPoP proofs that must be refused ----------------------------------------------------------
def _other_key_signature(key: ProofKey, token: str, htm: str, htu: str) -> str:
    """Signed by another key while naming `key`'s public JWK: the signature does not verify."""
    return ProofKey.generate(key.alg).proof(htm, htu, access_token=token, header_jwk=key.jwk)


def _tampered(key: ProofKey, token: str, htm: str, htu: str) -> str:
    head, payload, signature = key.proof(htm, htu, access_token=token).split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["htu"] = htu  # same claims, re-encoded with other spacing: the signature no longer fits
    return f"{head}.{base64.urlsafe_b64encode(json.dumps(forged, indent=1).encode()).rstrip(b'=').decode()}.{signature}"


ProofMaker = Callable[[ProofKey, str, str, str], str]


def _proof(**knobs: Any) -> ProofMaker:
    """A maker of one forgery; a callable knob is evaluated when the proof is made (times
    are relative to the request, not to when this module was imported)."""

    def make(key: ProofKey, token: str, htm: str, htu: str) -> str:
        made = {name: value() if callable(value) else value for name, value in knobs.items()}
        values = {"htm": htm, "htu": htu, "access_token": token, **made}
        return key.proof(values.pop("htm"), values.pop("htu"), **values)

    return make


BAD_PROOFS: list[tuple[str, ProofMaker]] = [
    ("wrong_htm", _proof(htm="POST")),
    ("htu_other_host", _proof(htu="https://other.example.com/mcp/tools")),
    ("htu_other_path", _proof(htu="https://mcp.example.com/mcp/other")),
    ("htu_other_scheme", _proof(htu="http://mcp.example.com/mcp/tools")),
    ("htu_other_port", _proof(htu="https://mcp.example.com:8443/mcp/tools")),
    ("htu_path_in_the_query", _proof(htu="https://mcp.example.com/mcp?/tools")),
    ("htu_url_in_the_query", _proof(htu="https://evil.example/mcp/tools?https://mcp.example.com/mcp/tools")),
    ("htu_url_in_the_fragment", _proof(htu="https://evil.example/#https://mcp.example.com/mcp/tools")),
    ("htu_userinfo", _proof(htu="https://mcp.example.com@evil.example/mcp/tools")),
    ("htu_dot_segments_elsewhere", _proof(htu="https://mcp.example.com/mcp/tools/../../admin")),
    ("htu_encoded_slash", _proof(htu="https://mcp.example.com/mcp%2Ftools")),
    ("htm_lowercase", _proof(htm="get")),  # methods are case-sensitive (RFC 9110 §9.1)
    ("htu_path_case", _proof(htu="https://mcp.example.com/MCP/tools")),  # paths are case-sensitive
    ("stale_iat", _proof(iat=lambda: time.time() - 600)),
    ("iat_just_past_the_window", _proof(iat=lambda: time.time() - 90)),  # proofLifetimeSeconds 60
    ("future_iat", _proof(iat=lambda: time.time() + 600)),
    ("no_iat", _proof(omit=("iat",))),
    ("no_jti", _proof(omit=("jti",))),
    ("no_htu", _proof(omit=("htu",))),
    ("no_ath", _proof(omit=("ath",))),
    ("wrong_ath", _proof(ath=access_token_hash("another.access.token"))),
    ("typ_jwt", _proof(typ="JWT")),
    ("no_typ", _proof(typ=None)),
    ("alg_hs256", _proof(header_alg="HS256")),
    ("alg_none", _proof(header_alg="none")),
    ("private_key_in_jwk", _proof(private_jwk=True)),
    ("symmetric_jwk", _proof(header_jwk={"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"})),
    ("bad_signature", _other_key_signature),
    ("tampered_payload", _tampered),
    ("not_a_jwt", lambda key, token, htm, htu: "not-a-proof"),
]


@pytest.mark.parametrize(("kind", "make"), BAD_PROOFS, ids=[kind for kind, _ in BAD_PROOFS])
def test_bad_proof_is_invalid_dpop_proof(
    edge: SecureEdge,
    dpop_tokens: dict[str, str],
    proof_keys: dict[str, ProofKey],
    kind: str,
    make: ProofMaker,
) -> None:
    token, key = dpop_tokens["ES256"], proof_keys["ES256"]
    proof = make(key, token, "GET", f"{ORIGIN}/mcp/tools")
    response = edge.request("/mcp/tools", headers=dpop_headers(token, proof))

    assert_refused(response, edge, "invalid_dpop_proof")
    assert 'error="invalid_dpop_proof"' in challenges(response)["DPoP"]  # on the scheme the client used


@pytest.mark.parametrize(
    ("alg", "header_alg"),
    [("EdDSA", "ES256"), ("ES256", "EdDSA"), ("ES256", "RS256"), ("RS256", "ES256")],
)
def test_alg_that_does_not_fit_the_key_is_invalid_dpop_proof(
    edge: SecureEdge, dpop_tokens: dict[str, str], proof_keys: dict[str, ProofKey], alg: str, header_alg: str
) -> None:
    response = dpop_request(edge, "/mcp", dpop_tokens[alg], proof_keys[alg], header_alg=header_alg)
    assert_refused(response, edge, "invalid_dpop_proof")


def test_replayed_proof_is_refused(
    edge: SecureEdge, dpop_tokens: dict[str, str], proof_keys: dict[str, ProofKey]
) -> None:
    token = dpop_tokens["RS256"]
    headers = dpop_headers(token, proof_keys["RS256"].proof("GET", f"{ORIGIN}/mcp", access_token=token))
    assert_reached_app(edge.request("/mcp", headers=headers), edge)

    assert_refused(edge.request("/mcp", headers=headers), edge, "invalid_dpop_proof")


def test_proof_by_another_key_than_the_tokens_is_invalid_token(edge: SecureEdge, dpop_tokens: dict[str, str]) -> None:
    """A valid proof, by the thief's own key: the token's cnf.jkt names another."""
    response = dpop_request(edge, "/mcp", dpop_tokens["ES256"], ProofKey.generate("ES256"))
    assert_refused(response, edge, "invalid_token")


def test_dpop_bound_token_sent_as_bearer_is_invalid_token(edge: SecureEdge, dpop_tokens: dict[str, str]) -> None:
    response = edge.request("/mcp", headers=[("Authorization", f"Bearer {dpop_tokens['ES256']}")])
    assert_refused(response, edge, "invalid_token")


def test_unbound_token_with_the_dpop_scheme_is_invalid_token(
    edge: SecureEdge, bearer_token: str, proof_keys: dict[str, ProofKey]
) -> None:
    response = dpop_request(edge, "/mcp", bearer_token, proof_keys["ES256"])
    assert_refused(response, edge, "invalid_token")


def test_dpop_scheme_without_a_proof_is_refused(edge: SecureEdge, dpop_tokens: dict[str, str]) -> None:
    response = edge.request("/mcp", headers=dpop_headers(dpop_tokens["ES256"], None))
    assert response.status_code == 401
    assert challenge_error(response) in ("invalid_dpop_proof", "invalid_token")
    assert edge.new_app_requests() == []


@pytest.mark.parametrize("sent", ["in two fields", "joined with a comma"])
def test_two_proofs_are_a_bad_request(
    edge: SecureEdge, dpop_tokens: dict[str, str], proof_keys: dict[str, ProofKey], sent: str
) -> None:
    token, key = dpop_tokens["ES256"], proof_keys["ES256"]
    first, second = (key.proof("GET", f"{ORIGIN}/mcp", access_token=token) for _ in range(2))
    if sent == "in two fields":
        headers = [*dpop_headers(token, first), ("DPoP", second)]
    else:
        headers = dpop_headers(token, f"{first},{second}")
    response = edge.request("/mcp", headers=headers)
    assert response.status_code == 400
    assert edge.new_app_requests() == []


# -- challenges and metadata -------------------------------------------------------------------
def test_no_token_gets_one_challenge_field_with_dpop_and_bearer(edge: SecureEdge) -> None:
    response = edge.request("/mcp")

    assert response.status_code == 401
    offered = challenges(response)  # one field: nginx passes only the first
    assert set(offered) == {"Bearer", "DPoP"}
    [algs] = [p for p in offered["DPoP"].split(", ") if p.startswith("algs=")]
    assert sorted(algs.removeprefix("algs=").strip('"').split()) == sorted(PROOF_ALGORITHMS)
    for params in offered.values():
        assert f'resource_metadata="{METADATA_URL}"' in params
        assert "error=" not in params


def test_protected_resource_metadata_advertises_dpop(edge: SecureEdge) -> None:
    document = edge.request("/.well-known/oauth-protected-resource/mcp").json()
    assert sorted(document["dpop_signing_alg_values_supported"]) == sorted(PROOF_ALGORITHMS)
    assert document["dpop_bound_access_tokens_required"] is False

    required = edge.request("/.well-known/oauth-protected-resource/dpop-required").json()
    assert required["dpop_bound_access_tokens_required"] is True
    mtls = edge.request("/.well-known/oauth-protected-resource/mtls-required").json()
    assert mtls["tls_client_certificate_bound_access_tokens"] is True


# -- nonces ------------------------------------------------------------------------------------
def nonce_from(response: httpx.Response) -> str:
    """The fresh nonce of a use_dpop_nonce answer, which must reach the client."""
    assert response.status_code == 401, response.text
    assert challenge_error(response) == "use_dpop_nonce"
    [nonce] = response.headers.get_list("dpop-nonce")
    assert nonce
    return nonce


def test_proof_without_a_nonce_gets_one_and_the_retry_passes(
    edge: SecureEdge, dpop_tokens: dict[str, str], proof_keys: dict[str, ProofKey]
) -> None:
    token, key = dpop_tokens["EdDSA"], proof_keys["EdDSA"]
    first = dpop_request(edge, "/nonce", token, key)
    assert_refused(first, edge, "use_dpop_nonce")
    nonce = nonce_from(first)

    assert_reached_app(dpop_request(edge, "/nonce", token, key, nonce=nonce), edge)
    # the nonce stays good for its lifetime, for further proofs of this client
    assert_reached_app(dpop_request(edge, "/nonce/more", token, key, nonce=nonce), edge)


@pytest.mark.parametrize(
    "forge",
    [
        lambda nonce: nonce[:-2] + ("AA" if not nonce.endswith("AA") else "BB"),  # MAC no longer fits
        lambda nonce: "a" * len(nonce),
        lambda nonce: "",
        lambda nonce: nonce + nonce,
    ],
    ids=["mac_changed", "made_up", "empty", "doubled"],
)
def test_forged_nonce_is_use_dpop_nonce(
    edge: SecureEdge, dpop_tokens: dict[str, str], proof_keys: dict[str, ProofKey], forge: Callable[[str], str]
) -> None:
    token, key = dpop_tokens["ES256"], proof_keys["ES256"]
    nonce = nonce_from(dpop_request(edge, "/nonce", token, key))

    response = dpop_request(edge, "/nonce", token, key, nonce=forge(nonce))
    assert_refused(response, edge, "use_dpop_nonce")
    assert nonce_from(response)


def test_nonce_of_another_policy_is_use_dpop_nonce(
    edge: SecureEdge, dpop_tokens: dict[str, str], proof_keys: dict[str, ProofKey]
) -> None:
    token, key = dpop_tokens["ES256"], proof_keys["ES256"]
    other = nonce_from(dpop_request(edge, "/other-nonce", token, key))

    assert_refused(dpop_request(edge, "/nonce", token, key, nonce=other), edge, "use_dpop_nonce")
    assert_reached_app(dpop_request(edge, "/other-nonce", token, key, nonce=other), edge)


def test_a_client_without_a_token_gets_a_nonce_to_start_with(
    edge: SecureEdge, dpop_tokens: dict[str, str], proof_keys: dict[str, ProofKey]
) -> None:
    """Every 401 of a nonce policy carries one (RFC 9449 §8), the first one too: the client's
    first proof can already name it."""
    response = edge.request("/nonce")
    assert response.status_code == 401
    [nonce] = response.headers.get_list("dpop-nonce")
    assert_reached_app(dpop_request(edge, "/nonce", dpop_tokens["ES256"], proof_keys["ES256"], nonce=nonce), edge)


def test_nonce_is_not_asked_for_where_the_policy_has_none(
    edge: SecureEdge, dpop_tokens: dict[str, str], proof_keys: dict[str, ProofKey]
) -> None:
    response = edge.request("/mcp")
    assert "dpop-nonce" not in response.headers
    assert_reached_app(dpop_request(edge, "/mcp", dpop_tokens["ES256"], proof_keys["ES256"]), edge)


# -- what a policy requires --------------------------------------------------------------------
def test_dpop_required_refuses_a_bearer_token(
    edge: SecureEdge, bearer_token: str, dpop_tokens: dict[str, str], proof_keys: dict[str, ProofKey]
) -> None:
    refused = edge.request("/dpop-required", headers=[("Authorization", f"Bearer {bearer_token}")])
    assert_refused(refused, edge, "invalid_token")
    assert_reached_app(dpop_request(edge, "/dpop-required", dpop_tokens["ES256"], proof_keys["ES256"]), edge)


def test_dpop_disabled_refuses_a_dpop_bound_token(
    edge: SecureEdge, bearer_token: str, dpop_tokens: dict[str, str], proof_keys: dict[str, ProofKey]
) -> None:
    response = dpop_request(edge, "/dpop-disabled", dpop_tokens["ES256"], proof_keys["ES256"])
    assert_refused(response, edge, "invalid_token")
    assert_reached_app(edge.request("/dpop-disabled", headers=[("Authorization", f"Bearer {bearer_token}")]), edge)


def test_mtls_required_refuses_an_unbound_token_even_with_a_certificate(
    edge: SecureEdge, bearer_token: str, cert_token: str, client_cert: IssuedCert
) -> None:
    refused = edge.request("/mtls-required", headers=[("Authorization", f"Bearer {bearer_token}")], cert=client_cert)
    assert_refused(refused, edge, "invalid_token")
    allowed = edge.request("/mtls-required", headers=[("Authorization", f"Bearer {cert_token}")], cert=client_cert)
    assert_reached_app(allowed, edge)


# -- certificate-bound tokens --------------------------------------------------------------------
def test_certificate_bound_token_without_a_certificate_is_invalid_token(edge: SecureEdge, cert_token: str) -> None:
    response = edge.request("/mcp", headers=[("Authorization", f"Bearer {cert_token}")])
    assert_refused(response, edge, "invalid_token")


def test_certificate_bound_token_with_another_certificate_is_invalid_token(
    edge: SecureEdge, cert_token: str, other_cert: IssuedCert
) -> None:
    response = edge.request("/mcp", headers=[("Authorization", f"Bearer {cert_token}")], cert=other_cert)
    assert_refused(response, edge, "invalid_token")


@pytest.mark.parametrize("with_own_certificate", [False, True], ids=["no_certificate", "own_certificate"])
def test_certificate_header_forged_by_the_client_is_ignored(
    edge: SecureEdge, cert_token: str, client_cert: IssuedCert, other_cert: IssuedCert, with_own_certificate: bool
) -> None:
    """A thief with the token (its cnf.x5t#S256 is readable) claims the victim's certificate
    in the header the proxy would write, in the proxy's format, once and twice."""
    forged = forged_cert_header(edge.name, client_cert.cert)
    headers = [("Authorization", f"Bearer {cert_token}"), forged, forged]
    response = edge.request("/mcp", headers=headers, cert=other_cert if with_own_certificate else None)
    assert_refused(response, edge, "invalid_token")


def test_forged_certificate_header_does_not_hide_the_real_certificate(
    edge: SecureEdge, cert_token: str, client_cert: IssuedCert, other_cert: IssuedCert
) -> None:
    """The holder of the certificate passes even when a header claiming another one rides
    along: the proxy replaced it (a second copy would have been a 400)."""
    headers = [("Authorization", f"Bearer {cert_token}"), forged_cert_header(edge.name, other_cert.cert)]
    assert_reached_app(edge.request("/mcp", headers=headers, cert=client_cert), edge)


# -- what the proxy sends to the check, seen by a recorder in authgate's place -------------------
class Recorder:
    """An echo server in authgate's place (check, gRPC and public port all point at it):
    it allows every check and keeps what each proxy sent."""

    def __init__(self, echo: EchoUpstream) -> None:
        self.check_port = self.port = self.grpc_port = echo.port


@pytest.mark.parametrize("proxy_name", ["nginx", "envoy-http", "traefik"])
@pytest.mark.parametrize("with_certificate", [False, True], ids=["no_certificate", "certificate"])
def test_client_sent_certificate_header_never_reaches_the_check(
    proxy_name: str,
    with_certificate: bool,
    pki: TestCA,
    client_cert: IssuedCert,
    other_cert: IssuedCert,
    tmp_path: Path,
) -> None:
    """Over https and plain http: the check request carries the header only as the proxy
    wrote it, from the certificate it verified, never the client's copy (sent twice, in the
    proxy's own format, and in the other proxies' names too)."""
    proxy_cases.require_proxy(proxy_name)
    forged = [forged_cert_header(name, other_cert.cert) for name in ("nginx", "envoy-http", "traefik")]
    with EchoUpstream() as check, EchoUpstream() as app:
        proxy = proxy_cases.example_proxy(proxy_name, tmp_path / proxy_name, Recorder(check), app, ca=pki)  # type: ignore[arg-type]
        with (
            proxy,
            httpx.Client(verify=pki.ssl_context(client_cert if with_certificate else None), trust_env=False) as http,
        ):
            for url in (proxy.tls_url, proxy.url):
                response = http.get(
                    f"{url}/mcp",
                    headers=[("Host", HOST), *forged, *forged],
                    extensions={"sni_hostname": HOST} if url.startswith("https") else {},
                )
                assert response.status_code == 200
                seen = check.requests[-1]["raw_headers"]
                name = CERT_HEADERS[proxy_name].lower()
                values = [value for key, value in seen if key == name]
                if with_certificate and url == proxy.tls_url:
                    assert len(values) == 1, values
                    assert certificate_of(proxy_name, values[0]) == client_cert.cert.read_text().strip()
                else:
                    assert values == []


def certificate_of(proxy: str, value: str) -> str:
    """The PEM a proxy's certificate header carries."""
    if proxy == "nginx":
        return urllib.parse.unquote(value).strip()
    if proxy == "envoy-http":
        [cert] = [part.removeprefix("Cert=").strip('"') for part in value.split(";") if part.startswith("Cert=")]
        assert f"Hash={hashlib.sha256(pem_der(urllib.parse.unquote(cert))).hexdigest()}" in value
        return urllib.parse.unquote(cert).strip()
    # Traefik sends the chain the client presented, leaf first, comma-separated (OpenSSL
    # clients add the CA from their trust store): authgate must read the leaf only.
    leaf = value.split(",")[0]
    body = "\n".join(leaf[i : i + 64] for i in range(0, len(leaf), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----"


def pem_der(pem: str) -> bytes:
    return base64.b64decode("".join(line for line in pem.splitlines() if not line.startswith("-----")))


class GrpcRecorder(external_auth_pb2_grpc.AuthorizationServicer):
    """A gRPC ext_authz server in authgate's place (with gRPC health, which the example's
    cluster checks): it allows every check and keeps each CheckRequest."""

    def __init__(self) -> None:
        self.requests: list[external_auth_pb2.CheckRequest] = []
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(self, self.server)
        health = HealthServicer()
        for service in ("", "envoy.service.auth.v3.Authorization"):
            health.set(service, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def Check(self, request: external_auth_pb2.CheckRequest, context: Any) -> external_auth_pb2.CheckResponse:
        self.requests.append(request)
        return external_auth_pb2.CheckResponse(ok_response=external_auth_pb2.OkHttpResponse())

    def __enter__(self) -> GrpcRecorder:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)


@pytest.mark.parametrize("proxy_name", ["envoy-grpc", "envoy-grpc-raw-headers"])
@pytest.mark.parametrize("with_certificate", [False, True], ids=["no_certificate", "certificate"])
def test_client_sent_certificate_header_never_reaches_the_grpc_check(
    proxy_name: str,
    with_certificate: bool,
    pki: TestCA,
    client_cert: IssuedCert,
    other_cert: IssuedCert,
    tmp_path: Path,
) -> None:
    """Over gRPC the certificate is Envoy's attributes.source.certificate, set from the TLS
    peer only; no client-sent certificate header (any proxy's name, sent twice) is in the
    CheckRequest at all, in either header form."""
    proxy_cases.require_proxy(proxy_name)
    forged = [forged_cert_header(name, other_cert.cert) for name in ("nginx", "envoy-http", "traefik")]
    names = {name.lower() for name, _ in forged}
    with EchoUpstream() as app, GrpcRecorder() as recorder:
        gate = Recorder(app)
        gate.grpc_port = recorder.port
        proxy = proxy_cases.example_proxy(proxy_name, tmp_path / proxy_name, gate, app, ca=pki)  # type: ignore[arg-type]
        verify = pki.ssl_context(client_cert if with_certificate else None)
        with proxy, httpx.Client(verify=verify, trust_env=False) as http:
            for url in (proxy.tls_url, proxy.url):
                response = http.get(
                    f"{url}/mcp",
                    headers=[("Host", HOST), *forged, *forged],
                    extensions={"sni_hostname": HOST} if url.startswith("https") else {},
                )
                assert response.status_code == 200
                attributes = recorder.requests[-1].attributes
                sent = {key.lower() for key in attributes.request.http.headers}
                sent |= {entry.key.lower() for entry in attributes.request.http.header_map.headers}
                assert not sent & names, sent & names
                peer = urllib.parse.unquote(attributes.source.certificate).strip()
                if with_certificate and url == proxy.tls_url:
                    assert peer == client_cert.cert.read_text().strip()
                else:
                    assert peer == ""


# -- the trusted header, straight at the check ports ----------------------------------------------
@pytest.fixture(scope="module")
def gates(
    idp: OidcProvider, pki: TestCA, sealing_keys: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str | None, Authgate]]:
    """authgate trusting X-SSL-Client-Cert, x-forwarded-client-cert, and no header at all."""
    directory = tmp_path_factory.mktemp("sender-gates")
    started: dict[str | None, Authgate] = {}
    try:
        for header in ("X-SSL-Client-Cert", "x-forwarded-client-cert", None):
            started[header] = start_authgate(directory / str(header), idp, pki, sealing_keys, header, name="gate")
        yield started
    finally:
        for gate in started.values():
            gate.stop()
    for gate in started.values():
        assert_clean_log(gate.log(), str(gate.process.log_path))


def nginx_check(gate: Authgate, token: str, **headers: str) -> httpx.Response:
    """`X_SSL_Client_Cert=...` sends X-SSL-Client-Cert."""
    sent = {"X-Original-URL": RESOURCE, "X-Original-Method": "GET", "Authorization": f"Bearer {token}"}
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    return httpx.get(gate.check_url("nginx"), headers=sent, timeout=10)


def envoy_check(gate: Authgate, token: str, **headers: str) -> httpx.Response:
    sent = {"Host": HOST, "X-Forwarded-Proto": "https", "Authorization": f"Bearer {token}", **headers}
    return httpx.get(f"http://127.0.0.1:{gate.check_port}/ext-authz/envoy/mcp", headers=sent, timeout=10)


def xfcc(cert: Path, *, cert_part: Path | None = None, hash_part: Path | None = None) -> str:
    """An XFCC element as Envoy writes it with SANITIZE_SET: Hash= and Cert= (of `cert`, or
    of the others given, to make them disagree)."""
    hashed = certificate_hex_hash(hash_part or cert)
    return f'Hash={hashed};Cert="{urllib.parse.quote((cert_part or cert).read_text(), safe="")}"'


def test_certificate_header_is_read_in_each_format(
    gates: dict[str | None, Authgate], cert_token: str, client_cert: IssuedCert
) -> None:
    pem = client_cert.cert.read_text()
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    nginx_gate, envoy_gate = gates["X-SSL-Client-Cert"], gates["x-forwarded-client-cert"]
    for value in (urllib.parse.quote(pem, safe=""), body, f"{body},{body[::-1]}"):  # nginx, Traefik, Traefik chain
        assert nginx_check(nginx_gate, cert_token, X_SSL_Client_Cert=value).status_code == 200
    hashed = certificate_hex_hash(client_cert.cert)
    for value in (xfcc(client_cert.cert), f"Hash={hashed}", f'By=spiffe://x;Hash={hashed};Subject="CN=a,O=b"'):
        assert envoy_check(envoy_gate, cert_token, **{"x-forwarded-client-cert": value}).status_code == 200


@pytest.mark.parametrize(
    "value",
    [
        "not a certificate",
        "%%%",
        "-----BEGIN%20CERTIFICATE-----%0AAAAA",  # no end line
        "-----BEGIN%20CERTIFICATE-----%0A-----END%20CERTIFICATE-----",  # empty
    ],
)
def test_malformed_certificate_header_is_a_bad_request(
    gates: dict[str | None, Authgate], cert_token: str, value: str
) -> None:
    assert nginx_check(gates["X-SSL-Client-Cert"], cert_token, X_SSL_Client_Cert=value).status_code == 400


def test_malformed_xfcc_is_a_bad_request(
    gates: dict[str | None, Authgate], cert_token: str, client_cert: IssuedCert, other_cert: IssuedCert
) -> None:
    gate = gates["x-forwarded-client-cert"]
    for value in (
        f"{xfcc(other_cert.cert)},{xfcc(client_cert.cert)}",  # two elements: a client's copy appended to
        xfcc(client_cert.cert, hash_part=other_cert.cert),  # Cert and Hash disagree
        "Hash=abc",  # not a SHA-256
        'By=spiffe://x;Cert="unterminated',
        "Subject=CN=a",  # neither Cert nor Hash
    ):
        assert envoy_check(gate, cert_token, **{"x-forwarded-client-cert": value}).status_code == 400, value


def test_no_certificate_header_is_trusted_by_default(
    gates: dict[str | None, Authgate], cert_token: str, client_cert: IssuedCert
) -> None:
    """Without --client-cert-header, a header claiming the token's certificate is ignored in
    every dialect: the certificate-bound token is refused."""
    gate = gates[None]
    pem = urllib.parse.quote(client_cert.cert.read_text(), safe="")
    for response in (
        nginx_check(gate, cert_token, X_SSL_Client_Cert=pem, X_Forwarded_Tls_Client_Cert=pem),
        envoy_check(gate, cert_token, **{"x-forwarded-client-cert": xfcc(client_cert.cert)}),
    ):
        assert response.status_code == 401
        assert challenge_error(response) == "invalid_token"


def grpc_check(gate: Authgate, token: str, peer: Path | None = None, **headers: str) -> Any:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.host, http.path, http.scheme = "GET", HOST, "/mcp", "https"
    http.headers["authorization"] = f"Bearer {token}"
    for name, value in headers.items():
        http.headers[name.replace("_", "-").lower()] = value
    if peer is not None:  # as Envoy fills it with include_peer_certificate: URL-encoded PEM
        request.attributes.source.certificate = urllib.parse.quote(peer.read_text(), safe="")
    with grpc.insecure_channel(f"127.0.0.1:{gate.grpc_port}") as channel:
        return external_auth_pb2_grpc.AuthorizationStub(channel).Check(request, timeout=10)


def test_grpc_reads_the_peer_certificate_and_no_header_by_default(
    gates: dict[str | None, Authgate], cert_token: str, client_cert: IssuedCert, other_cert: IssuedCert
) -> None:
    gate = gates[None]
    assert grpc_check(gate, cert_token, peer=client_cert.cert).status.code == 0
    assert grpc_check(gate, cert_token, peer=other_cert.cert).denied_response.status.code == 401
    # a gateway that sends every header (Istio's gRPC provider) cannot be used to forge one
    forged = grpc_check(gate, cert_token, **{"x-forwarded-client-cert": xfcc(client_cert.cert)})
    assert forged.denied_response.status.code == 401


def test_grpc_prefers_envoys_peer_certificate_to_a_trusted_header(
    gates: dict[str | None, Authgate], cert_token: str, client_cert: IssuedCert, other_cert: IssuedCert
) -> None:
    """A gateway that forwards every header unsanitized cannot let a client's XFCC stand in
    for the certificate Envoy itself verified: with a peer certificate, the header is not read."""
    gate = gates["x-forwarded-client-cert"]
    spoofed = grpc_check(gate, cert_token, peer=other_cert.cert, **{"x-forwarded-client-cert": xfcc(client_cert.cert)})
    assert spoofed.denied_response.status.code == 401
    assert grpc_check(gate, cert_token, **{"x-forwarded-client-cert": xfcc(client_cert.cert)}).status.code == 0


# -- two replicas --------------------------------------------------------------------------------
def test_two_replicas_with_the_same_sealing_keys_accept_each_others_nonces(
    gates: dict[str | None, Authgate],
    idp: OidcProvider,
    pki: TestCA,
    dpop_tokens: dict[str, str],
    proof_keys: dict[str, ProofKey],
    tmp_path: Path,
) -> None:
    """A nonce one replica hands out opens the other (no shared store: the HMAC key comes
    from the sealing keys); a replica with other sealing keys asks for its own. A nonce
    past its policy's lifetime is refused by both. (Straight to the check ports: which
    replica answers is the point, and the proxies' part is tested above.) The replicas are
    two of `gates`, which share the module's sealing keys."""
    token, key = dpop_tokens["ES256"], proof_keys["ES256"]
    url = f"{ORIGIN}/nonce"
    a, b = gates["X-SSL-Client-Cert"], gates[None]
    c = start_authgate(tmp_path, idp, pki, sealing_keys_file(tmp_path / "other-keys.json"), None, name="other-keys")
    try:

        def check(replica: Authgate, nonce: str | None, url: str = url) -> httpx.Response:
            proof = key.proof("GET", url, access_token=token, nonce=nonce)
            headers = {"X-Original-URL": url, "X-Original-Method": "GET", "DPoP": proof}
            headers["Authorization"] = f"DPoP {token}"
            return httpx.get(replica.check_url("nginx"), headers=headers, timeout=10)

        short_url = f"{ORIGIN}/short-nonce"
        short_nonce, issued = nonce_from(check(a, None, short_url)), time.monotonic()
        nonce = nonce_from(check(a, None))
        assert check(b, nonce).status_code == 200
        assert check(a, nonce).status_code == 200
        assert nonce_from(check(c, nonce)) != nonce
        assert check(a, nonce_from(check(b, None))).status_code == 200

        # An expired nonce is refused like a forged one, with a fresh one to retry with.
        assert check(b, short_nonce, short_url).status_code == 200
        time.sleep(max(0.0, issued + SHORT_NONCE_SECONDS + 1.5 - time.monotonic()))
        for replica in (a, b):
            assert nonce_from(check(replica, short_nonce, short_url)) != short_nonce
    finally:
        c.stop()
    assert_clean_log(c.log(), str(c.process.log_path))


def test_full_replay_cache_refuses_new_proofs_and_forgets_no_live_one(
    idp: OidcProvider,
    pki: TestCA,
    sealing_keys: Path,
    dpop_tokens: dict[str, str],
    proof_keys: dict[str, ProofKey],
    tmp_path: Path,
) -> None:
    """`--dpop-replay-entries 2`: refused proofs take no room; two good proofs fill it; then a
    third good proof is refused (never an old entry evicted to make room, which would let
    the first be replayed), and so are replays of the first two."""
    token, key = dpop_tokens["EdDSA"], proof_keys["EdDSA"]
    gate = start_authgate(
        tmp_path, idp, pki, sealing_keys, None, name="small-replay", extra=("--dpop-replay-entries", "2")
    )
    try:

        def check(proof: str) -> httpx.Response:
            headers = {"X-Original-URL": RESOURCE, "X-Original-Method": "GET", "DPoP": proof}
            headers["Authorization"] = f"DPoP {token}"
            return httpx.get(gate.check_url("nginx"), headers=headers, timeout=10)

        for _ in range(3):  # wrong ath: refused after everything but the replay check
            assert check(key.proof("GET", RESOURCE, ath=access_token_hash("other"))).status_code == 401
        first, second, third = (key.proof("GET", RESOURCE, access_token=token) for _ in range(3))
        assert check(first).status_code == 200
        assert check(second).status_code == 200
        for proof in (third, first, second):
            response = check(proof)
            assert response.status_code == 401
            assert challenge_error(response) == "invalid_dpop_proof"
    finally:
        gate.stop()
    assert_clean_log(gate.log(), str(gate.process.log_path))
