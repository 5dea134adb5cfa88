"""The JWT and header attack corpus, as data: each case a distinct attack, the status and
decision reason it must get, and why. Every case runs through every dialect of one real
`authgate serve` (nginx, Traefik and Envoy over HTTP on the check port, Envoy over gRPC)
and must be decided identically in all four; the log is checked for tracebacks and tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import httpx
import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from jwcrypto import jwe, jwk
from tests.infra.jwks_server import JwksServer
from tests.infra.keys import SigningKey, b64url, claims
from tests.support.authgate import LOCAL_EGRESS, Authgate
from tests.support.leaks import MINTED_TOKENS, assert_clean_log

HOST_A, HOST_B = "a.example.com", "b.example.com"
RESOURCE_A, RESOURCE_B = f"https://{HOST_A}/mcp", f"https://{HOST_B}/mcp"


@dataclass(frozen=True)
class Keys:
    trusted: SigningKey  # published by issuer A
    other_issuer: SigningKey  # published by issuer B (trusted only by policy B)
    attacker: SigningKey  # published by nobody
    issuer_a: str
    issuer_b: str

    def sign(self, key: SigningKey | None = None, issuer: str | None = None, audience: str = RESOURCE_A, **extra):
        token = (key or self.trusted).sign(claims(issuer or self.issuer_a, audience, scope="mcp:read", **extra))
        MINTED_TOKENS.add(token)
        return token


def _segments(header: dict | bytes, payload: dict | bytes, signature: bytes = b"\0" * 64) -> str:
    def encode(part):
        return b64url(part if isinstance(part, bytes) else json.dumps(part).encode())

    return f"{encode(header)}.{encode(payload)}.{b64url(signature)}"


def _hs(keys: Keys, alg: str, secret: bytes) -> str:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    header = b64url(json.dumps({"alg": alg, "kid": keys.trusted.kid, "typ": "at+jwt"}).encode())
    body = b64url(json.dumps(claims(keys.issuer_a, RESOURCE_A, scope="mcp:read")).encode())
    return f"{header}.{body}.{b64url(hmac.new(secret, f'{header}.{body}'.encode(), digest).digest())}"


def _raw_signed(keys: Keys, header_extra: dict | None = None, payload: bytes | None = None) -> str:
    """A token the trusted key really signed, over exactly these header fields / payload bytes."""
    from jwcrypto import jws

    protected = {"alg": "ES256", "kid": keys.trusted.kid, "typ": "at+jwt", **(header_extra or {})}
    body = payload if payload is not None else json.dumps(claims(keys.issuer_a, RESOURCE_A, scope="mcp:read")).encode()
    known = jws.JWSHeaderRegistry  # (b64 is one jwcrypto implements itself: RFC 7797)
    registry = {
        name: jws.JWSEHeaderParameter(name, False, True, None)
        for name in protected.get("crit", [])
        if name not in known
    }
    token = jws.JWS(body, header_registry=registry or None)
    token.add_signature(keys.trusted.key, alg="ES256", protected=json.dumps(protected))
    return token.serialize(compact=True)


def _embedded(keys: Keys, header: str) -> str:
    """Signed by the attacker, whose public key (or a URL for it) the header carries."""
    public = keys.attacker.public_jwk()
    value = {
        "jwk": public,
        "jku": "https://attacker.example.com/jwks.json",
        "x5u": "https://attacker.example.com/cert.pem",
        "x5c": [base64.b64encode(b"not-a-real-certificate").decode()],
    }[header]
    token = keys.attacker.sign(claims(keys.issuer_a, RESOURCE_A, scope="mcp:read"), **{header: value})
    MINTED_TOKENS.add(token)
    return token


def _jwe(keys: Keys) -> str:
    key = jwk.JWK.generate(kty="oct", size=256)
    token = jwe.JWE(json.dumps(claims(keys.issuer_a, RESOURCE_A)).encode(), protected={"alg": "dir", "enc": "A256GCM"})
    token.add_recipient(key)
    return token.serialize(compact=True)


def _duplicate_members(keys: Keys) -> str:
    body = json.dumps(claims(keys.issuer_a, RESOURCE_A, scope="mcp:read"))
    return _raw_signed(keys, payload=('{"iss": "https://evil.example.com", ' + body[1:]).encode())


def _padded(size: int) -> Callable[[Keys], str]:
    return lambda keys: keys.sign(padding="x" * size)


@dataclass(frozen=True)
class Case:
    name: str
    why: str
    status: int
    reason: str  # the decision log's reason
    token: Callable[[Keys], str | None] | None = None  # sent as "Bearer <token>"
    authorization: Callable[[Keys], list[str]] | None = None  # raw Authorization values instead
    host: str = HOST_A
    query: str = ""
    cookie: Callable[[Keys], str] | None = None
    dialects: tuple[str, ...] = ("nginx", "traefik", "envoy", "grpc")
    extra: dict = field(default_factory=dict)


def _bearer(keys: Keys) -> str:
    return keys.sign()


CORPUS = [
    Case("valid_token", "the control: a good token of policy A on A's host", 200, "allowed", _bearer),
    # -- algorithm confusion ---------------------------------------------------------------
    *(
        Case(
            f"alg_{spelling}",
            "an unsigned token in any spelling of none",
            401,
            "invalid_token",
            lambda k, s=spelling: _segments({"alg": s, "typ": "at+jwt"}, claims(k.issuer_a, RESOURCE_A), b""),
        )
        for spelling in ("none", "None", "NONE", "nOnE")
    ),
    Case(
        "hs256_rsa_pem",
        "HMAC keyed with the RSA public key as PEM",
        401,
        "invalid_token",
        lambda k: _hs(k, "HS256", SigningKey.generate("RS256").key.export_to_pem(private_key=False)),
    ),
    Case(
        "hs256_ec_pem",
        "HMAC keyed with the issuer's EC public key as PEM",
        401,
        "invalid_token",
        lambda k: _hs(k, "HS256", k.trusted.key.export_to_pem(private_key=False)),
    ),
    Case(
        "hs384_public_jwk",
        "HMAC keyed with the public JWK as JSON",
        401,
        "invalid_token",
        lambda k: _hs(k, "HS384", json.dumps(k.trusted.public_jwk()).encode()),
    ),
    Case("hs512_empty_key", "HMAC with an empty key", 401, "invalid_token", lambda k: _hs(k, "HS512", b"")),
    # -- keys the token brings along -------------------------------------------------------
    *(
        Case(
            f"embedded_{header}",
            f"an attacker key named by {header}: never fetched, never trusted",
            401,
            "invalid_token",
            lambda k, h=header: _embedded(k, h),
        )
        for header in ("jwk", "jku", "x5u", "x5c")
    ),
    # -- header features authgate does not implement ---------------------------------------
    Case(
        "crit",
        "an unknown critical header must be refused (RFC 7515 §4.1.11)",
        401,
        "invalid_token",
        lambda k: _raw_signed(k, {"crit": ["exp"], "exp": 1}),
    ),
    Case(
        "b64_false",
        "unencoded payload (RFC 7797) is a crit extension",
        401,
        "invalid_token",
        lambda k: _raw_signed(k, {"b64": False, "crit": ["b64"]}, payload=b'{"sub":"alice"}'),
    ),
    Case(
        "nested_jwt",
        "cty JWT: the payload is another token, not claims",
        401,
        "invalid_token",
        lambda k: _raw_signed(k, {"cty": "JWT"}, payload=k.sign().encode()),
    ),
    Case("jwe", "an encrypted token is no signed access token", 401, "invalid_token", _jwe),
    Case(
        "duplicate_claim",
        "two iss members: no parser may read another than ours",
        401,
        "invalid_token",
        _duplicate_members,
    ),
    Case(
        "non_utf8_payload",
        "payload bytes that are not UTF-8",
        401,
        "invalid_token",
        lambda k: _raw_signed(k, payload=b'{"iss": "\xff"}'),
    ),
    # -- claim types -------------------------------------------------------------------------
    *(
        Case(f"aud_{kind}", f"aud as {kind}", 401, "invalid_token", lambda k, v=value: k.sign(audience=v))
        for kind, value in (("object", {"aud": RESOURCE_A}), ("number", 7), ("nested_list", [[RESOURCE_A]]))
    ),
    *(
        Case(f"exp_{kind}", f"exp as {kind}", 401, "invalid_token", lambda k, v=value: k.sign(exp=v))
        for kind, value in (
            ("string", str(int(time.time()) + 600)),
            ("bool", True),
            ("huge", 10**30),
            ("negative", -1),
            ("list", [int(time.time()) + 600]),
        )
    ),
    Case(
        "exp_float_in_range",
        "a fractional NumericDate is a date (RFC 7519 §2)",
        200,
        "allowed",
        lambda k: k.sign(exp=time.time() + 600.5),
    ),
    Case(
        "iss_list", "iss as a list holding the trusted issuer", 401, "invalid_token", lambda k: k.sign(iss=[k.issuer_a])
    ),
    Case(
        "cnf_bound",
        "a sender-constrained token presented as a bearer token",
        401,
        "invalid_token",
        lambda k: k.sign(cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
    ),
    # -- sizes -------------------------------------------------------------------------------
    Case("token_8_kib", "a large but legitimate token", 200, "allowed", _padded(6 * 1024)),
    # (the HTTP dialects: behind Envoy over gRPC the same request exceeds Envoy's own 60 KiB first)
    Case(
        "token_64_kib",
        "over the per-header cap authgate reads",
        400,
        "bad_request",
        _padded(48 * 1024),
        dialects=("nginx", "traefik", "envoy"),
    ),
    Case("thousand_segments", "1,000 dots", 401, "invalid_token", lambda k: ".".join(["eyJ"] * 1000)),
    # -- the Authorization header itself -------------------------------------------------------
    Case(
        "two_authorization_headers",
        "two copies: authgate and the app could read different ones",
        400,
        "bad_request",
        authorization=lambda k: [f"Bearer {k.sign()}", "Bearer garbage"],
    ),
    Case(
        "joined_authorization",
        "two copies a proxy joined with a comma",
        400,
        "bad_request",
        authorization=lambda k: [f"Bearer {k.sign()}, Bearer x"],
    ),
    Case(
        "tab_after_scheme",
        "no space after Bearer: not bearer credentials at all",
        401,
        "no_token",
        authorization=lambda k: [f"Bearer\t{k.sign()}"],
    ),
    Case(
        "two_spaces",
        "extra whitespace around a good token is harmless",
        200,
        "allowed",
        authorization=lambda k: [f"Bearer   {k.sign()}"],
    ),
    Case(
        "lowercase_scheme",
        "the scheme is case-insensitive (RFC 9110 §11.1)",
        200,
        "allowed",
        authorization=lambda k: [f"bearer {k.sign()}"],
    ),
    Case(
        "basic_scheme",
        "another scheme is no bearer token",
        401,
        "no_token",
        authorization=lambda k: ["Basic YWxpY2U6c2VjcmV0"],
    ),
    Case(
        "bearer_not_b64token",
        "characters a b64token cannot hold",
        401,
        "invalid_token",
        authorization=lambda k: ["Bearer a*b"],
    ),
    # -- where a token must never be read from -----------------------------------------------
    Case(
        "token_in_query",
        "RFC 6750 §2.3 query tokens are never read",
        401,
        "no_token",
        None,
        query="access_token={token}",
    ),
    Case(
        "token_in_cookie",
        "a cookie is never a credential here",
        401,
        "no_token",
        None,
        cookie=lambda k: f"access_token={k.sign()}",
    ),
    # -- confusion between policies and issuers -----------------------------------------------
    Case("policy_a_token_on_b", "a token for A's audience on B's host", 401, "invalid_token", _bearer, host=HOST_B),
    Case(
        "issuer_b_token_on_a",
        "issuer B is trusted by policy B only",
        401,
        "invalid_token",
        lambda k: k.sign(k.other_issuer, issuer=k.issuer_b),
    ),
    Case(
        "issuer_b_token_on_b",
        "the control for the line above",
        200,
        "allowed",
        lambda k: k.sign(k.other_issuer, issuer=k.issuer_b, audience=RESOURCE_B),
        host=HOST_B,
    ),
]


def _policy(name: str, issuer: str, resource: str) -> dict:
    return {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": name, "namespace": "corpus"},
        "spec": {"resource": resource, "issuers": [{"issuer": issuer}], "rules": [{"pathPrefix": "/mcp"}]},
    }


@pytest.fixture(scope="module")
def keys():
    trusted, other, attacker = SigningKey.generate("ES256"), SigningKey.generate("ES256"), SigningKey.generate("ES256")
    with JwksServer([trusted]) as issuer_a, JwksServer([other]) as issuer_b:
        yield Keys(trusted, other, attacker, issuer_a.issuer, issuer_b.issuer)


@pytest.fixture(scope="module")
def service(tmp_path_factory, keys):
    text = yaml.safe_dump_all([_policy("a", keys.issuer_a, RESOURCE_A), _policy("b", keys.issuer_b, RESOURCE_B)])
    instance = Authgate(tmp_path_factory.mktemp("corpus"), text, list(LOCAL_EGRESS)).start()
    yield instance
    instance.stop()
    assert_clean_log(instance.log(), "the corpus service log")


_ids = itertools.count(1)


def _ask(
    service: Authgate, stub, dialect: str, host: str, path: str, headers: list[tuple[str, str]]
) -> tuple[int, str]:
    request_id = f"corpus-{next(_ids)}"
    headers = [*headers, ("X-Request-Id", request_id)]
    if dialect == "grpc":
        request = external_auth_pb2.CheckRequest()
        http = request.attributes.request.http
        http.method, http.host, http.path, http.scheme = "GET", host, path, "https"
        for name, value in headers:  # one entry per value, as Envoy's encode_raw_headers sends them
            http.header_map.headers.append(base_pb2.HeaderValue(key=name.lower(), raw_value=value.encode()))
        status = stub.Check(request, timeout=10).denied_response.status.code or 200
    else:
        base = f"http://127.0.0.1:{service.check_port}"
        if dialect == "nginx":
            url, sent = (
                f"{base}/ext-authz/nginx",
                [("X-Original-URL", f"https://{host}{path}"), ("X-Original-Method", "GET")],
            )
        elif dialect == "traefik":
            url = f"{base}/ext-authz/traefik"
            sent = [
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", host),
                ("X-Forwarded-Uri", path),
                ("X-Forwarded-Method", "GET"),
            ]
        else:
            url, sent = f"{base}/ext-authz/envoy{path}", [("Host", host)]
        status = httpx.get(url, headers=[*sent, *headers], timeout=10).status_code
    found = [d for d in service.decisions() if d.get("request_id") == request_id]
    return status, (found[0]["reason"] if len(found) == 1 else f"{len(found)} decisions")


@pytest.fixture(scope="module")
def stub(service):
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        yield external_auth_pb2_grpc.AuthorizationStub(channel)


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_every_dialect_decides_the_attack_alike(service, stub, keys, case: Case):
    token = case.token(keys) if case.token else None
    headers: list[tuple[str, str]] = []
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    for value in case.authorization(keys) if case.authorization else ():
        headers.append(("Authorization", value))
    if case.cookie:
        headers.append(("Cookie", case.cookie(keys)))
    query = case.query.format(token=keys.sign()) if case.query else ""
    path = "/mcp/tools" + (f"?{query}" if query else "")
    decided = {dialect: _ask(service, stub, dialect, case.host, path, headers) for dialect in case.dialects}
    assert decided == {dialect: (case.status, case.reason) for dialect in case.dialects}, case.why
