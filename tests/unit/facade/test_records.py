"""The facade's sealed records keep their wire keys: values sealed by an earlier version
(a wrapped refresh token lives 30 days) open after an upgrade, and a malformed one fails closed."""

import base64
import secrets

import pytest

from authgate.errors import SealError
from authgate.facade.authorization_request import AuthorizationRequest
from authgate.facade.records import Code, ConsentForm, RememberedConsent, Transaction, WrappedRefresh
from authgate.sealing import SealingKeys

ISSUER, POLICY = "https://mcp.example.com", "uid-1"
REQUEST = AuthorizationRequest(
    client_id="client-1",
    client={},
    redirect_uri="http://127.0.0.1:5000/cb",
    scope=("mcp:read",),
    state="xyz",
    code_challenge="c" * 43,
    resource="https://mcp.example.com/mcp",
    redirect_uri_given=True,
)
# What the version before the records sealed (endpoints.py's dicts), key for key.
REQUEST_WIRE = {
    "cid": "client-1",
    "ruri": "http://127.0.0.1:5000/cb",
    "rgiven": True,
    "scope": ["mcp:read"],
    "state": "xyz",
    "cc": "c" * 43,
    "res": "https://mcp.example.com/mcp",
}
EARLIER = [
    (ConsentForm, "consent", {"req": REQUEST_WIRE, "b": "hash"}, ConsentForm(REQUEST, "hash")),
    (
        Transaction,
        "transaction",
        {"req": REQUEST_WIRE, "v": "verifier", "b": "hash", "jti": "j1"},
        Transaction(REQUEST, "verifier", "hash", "j1"),
    ),
    (
        Code,
        "code",
        REQUEST_WIRE | {"uc": "upstream", "v": "verifier", "jti": "j2"},
        Code(REQUEST, "upstream", "verifier", "j2"),
    ),
    (
        WrappedRefresh,
        "refresh",
        {"cid": "client-1", "rt": "upstream-rt", "scope": ["mcp:read"], "jti": "j3"},
        WrappedRefresh("client-1", "upstream-rt", ("mcp:read",), "j3"),
    ),
    (
        RememberedConsent,
        "remember",
        {"b": "hash", "clients": {"h1": ["mcp:read"]}},
        RememberedConsent("hash", {"h1": ["mcp:read"]}),
    ),
]


@pytest.fixture
def keys() -> SealingKeys:
    k = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return SealingKeys.parse({"keys": [{"kty": "oct", "kid": "k1", "k": k}]})


@pytest.mark.parametrize(("kind", "purpose", "wire", "record"), EARLIER)
def test_a_value_sealed_by_the_earlier_version_opens_as_its_record(keys, kind, purpose, wire, record):
    sealed = keys.seal(purpose, ISSUER, POLICY, wire, 60)
    assert kind.open(keys, ISSUER, POLICY, sealed) == record


@pytest.mark.parametrize(("kind", "purpose", "wire", "record"), EARLIER)
def test_a_record_seals_the_same_wire_keys_for_its_purpose(keys, kind, purpose, wire, record):
    assert purpose == kind.PURPOSE
    assert record.to_sealed() == wire
    assert keys.open(purpose, ISSUER, POLICY, record.seal(keys, ISSUER, POLICY)) == wire


@pytest.mark.parametrize(("kind", "purpose", "wire", "record"), EARLIER)
def test_a_record_missing_a_key_or_mistyped_fails_closed_with_a_seal_error(keys, kind, purpose, wire, record):
    flat = wire.get("req", wire)
    for name in list(wire) + [f"req.{n}" for n in flat if "req" in wire]:
        broken = {**wire}
        if name.startswith("req."):
            broken["req"] = {k: v for k, v in wire["req"].items() if k != name[4:]}
        else:
            del broken[name]
        with pytest.raises(SealError):
            kind.open(keys, ISSUER, POLICY, keys.seal(purpose, ISSUER, POLICY, broken, 60))
    first = next(iter(wire))
    with pytest.raises(SealError):
        kind.from_sealed({**wire, first: 12345})


def test_a_record_of_one_purpose_does_not_open_as_another(keys):
    sealed = WrappedRefresh("client-1", "rt", ()).seal(keys, ISSUER, POLICY)
    with pytest.raises(SealError):
        Code.open(keys, ISSUER, POLICY, sealed)


def test_each_new_record_gets_its_own_jti():
    assert WrappedRefresh("c", "rt", ()).jti != WrappedRefresh("c", "rt", ()).jti
