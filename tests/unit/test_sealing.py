"""Sealed values: what opens, and everything that must not."""

import base64
import json
import secrets

import pytest

from authgate.errors import SealError, SealingKeyError
from authgate.sealing import SealingKeyFile, SealingKeys


def key(kid: str, size: int = 32) -> dict:
    return {"kty": "oct", "kid": kid, "k": base64.urlsafe_b64encode(secrets.token_bytes(size)).rstrip(b"=").decode()}


def keys(*entries: dict) -> SealingKeys:
    return SealingKeys.parse({"keys": list(entries)})


ISSUER, POLICY = "https://mcp.example.com", "uid-1"


def test_round_trip():
    store = keys(key("a"))
    marker = "plaintext-marker-c1"
    sealed = store.seal("code", ISSUER, POLICY, {"client": marker}, ttl=60)
    assert store.open("code", ISSUER, POLICY, sealed) == {"client": marker}
    # encrypted, not just signed (a 19-character marker never turns up in ciphertext by chance,
    # as "c1" did once; nor does its base64url form)
    assert marker not in sealed and "cGxhaW50ZXh0LW1hcmtlci1jMQ" not in sealed


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


_FILE_KEYS = {kid: key(kid) for kid in ("k1", "k2")}


def _keys_json(*kids: str) -> str:
    return json.dumps({"keys": [_FILE_KEYS[kid] for kid in kids]})


def test_a_key_file_created_after_start_is_picked_up_and_rotation_keeps_old_values_open(tmp_path):
    path = tmp_path / "keys.json"
    source = SealingKeyFile(path, check_every=0)
    assert source.current() is None  # the operator has not created the Secret yet
    path.write_text(_keys_json("k1"))
    first = source.current()
    assert first is not None
    sealed = first.seal("code", "https://f", "uid", {"x": 1}, 60)
    path.write_text(_keys_json("k1", "k2"))
    rotated = source.current()
    assert rotated is not first and rotated.keys[-1].kid == "k2"
    assert rotated.open("code", "https://f", "uid", sealed) == {"x": 1}


def test_a_key_file_that_stops_parsing_keeps_the_last_good_keys(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(_keys_json("k1"))
    source = SealingKeyFile(path, check_every=0)
    good = source.current()
    path.write_text("{not json")
    assert source.current() is good
    path.unlink()
    assert source.current() is good


def _with_header(header: bytes, sealed: str) -> str:
    return base64.urlsafe_b64encode(header).rstrip(b"=").decode() + "." + sealed.split(".", 1)[1]


@pytest.mark.parametrize(
    "header",
    [
        b'{"alg":"dir","enc":"A256GCM","kid":"a","x":' + b"[" * 600 + b"]" * 600 + b"}",  # over the header cap
        b'{"alg":"dir","enc":"A256GCM","kid":' + b"[" * 450 + b"]" * 450 + b"}",  # deep within it
        b'{"alg":"dir","enc":"A256GCM","kid":"a","exp":NaN}',
        b'["alg"]',
        b"\xff\xfe",
    ],
)
def test_a_hostile_protected_header_is_refused_before_jwcrypto_reads_it(header):
    store = keys(key("a"))
    sealed = _with_header(header, store.seal("code", ISSUER, POLICY, {"x": 1}, ttl=60))
    with pytest.raises(SealError):
        store.open("code", ISSUER, POLICY, sealed)
    with pytest.raises(SealError):
        store.mac_key("code", ISSUER, POLICY, sealed)


def test_a_deeply_nested_key_file_is_a_clear_error(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SealingKeyError, match="nested too deeply"):
        SealingKeys.load(path)
