"""Sealed values: what opens, and everything that must not."""

import base64
import json
import secrets

import pytest

from authgate.sealing import SealError, SealingKeyError, SealingKeys


def key(kid: str, size: int = 32) -> dict:
    return {"kty": "oct", "kid": kid, "k": base64.urlsafe_b64encode(secrets.token_bytes(size)).rstrip(b"=").decode()}


def keys(*entries: dict) -> SealingKeys:
    return SealingKeys.parse({"keys": list(entries)})


ISSUER, POLICY = "https://mcp.example.com", "uid-1"


def test_round_trip():
    store = keys(key("a"))
    sealed = store.seal("code", ISSUER, POLICY, {"client": "c1"}, ttl=60)
    assert store.open("code", ISSUER, POLICY, sealed) == {"client": "c1"}
    assert "c1" not in sealed  # encrypted, not just signed


@pytest.mark.parametrize(
    ("purpose", "issuer", "policy"),
    [("registration", ISSUER, POLICY), ("code", "https://other.example.com", POLICY), ("code", ISSUER, "uid-2")],
)
def test_a_value_never_opens_as_another_purpose_facade_or_policy(purpose, issuer, policy):
    store = keys(key("a"))
    sealed = store.seal("code", ISSUER, POLICY, {"x": 1}, ttl=60)
    with pytest.raises(SealError):
        store.open(purpose, issuer, policy, sealed)


def test_expired_values_do_not_open():
    store = keys(key("a"))
    sealed = store.seal("code", ISSUER, POLICY, {"x": 1}, ttl=60, now=1000)
    assert store.open("code", ISSUER, POLICY, sealed, now=1059) == {"x": 1}
    with pytest.raises(SealError, match="expired"):
        store.open("code", ISSUER, POLICY, sealed, now=1060)


def test_tampering_is_detected():
    store = keys(key("a"))
    sealed = store.seal("code", ISSUER, POLICY, {"x": 1}, ttl=60)
    parts = sealed.split(".")
    parts[3] = parts[3][:-2] + ("AA" if not parts[3].endswith("AA") else "BB")
    for bad in [".".join(parts), sealed + "x", "a.b.c.d.e", "", "x" * 20000]:
        with pytest.raises(SealError):
            store.open("code", ISSUER, POLICY, bad)


def test_rotation_newest_seals_every_key_opens():
    old, new = key("old"), key("new")
    before = keys(old).seal("code", ISSUER, POLICY, {"x": 1}, ttl=60)
    rotated = keys(old, new)
    assert rotated.open("code", ISSUER, POLICY, before) == {"x": 1}
    after = rotated.seal("code", ISSUER, POLICY, {"x": 2}, ttl=60)
    assert json.loads(base64.urlsafe_b64decode(after.split(".")[0] + "=="))["kid"] == "new"
    with pytest.raises(SealError, match="unknown key"):
        keys(new).open("code", ISSUER, POLICY, before)  # the old key was removed


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"keys": []},
        {"keys": [{"kty": "RSA"}]},
        {"keys": [key("a", size=16)]},
        {"keys": [key("a"), key("a")]},
        {"keys": [{"kty": "oct", "kid": "a", "k": "!!"}]},
    ],
)
def test_bad_key_files_are_refused(document):
    with pytest.raises(SealingKeyError):
        SealingKeys.parse(document)
