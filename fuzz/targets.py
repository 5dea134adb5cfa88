"""The fuzz targets: each takes the fuzzer's bytes and may raise only the error the input
deserves (a normal refusal); anything else is a crash the fuzzer reports."""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from authgate import bounded_json
from authgate.check.tokens.jws import parse_compact
from authgate.errors import InputError, PolicyError, SealError, TokenError
from authgate.policy import ValidationSettings, compile_document, compile_loaded, load_files
from authgate.sealing import SealingKeys
from authgate.urls import normalize_path, parse_url

_SETTINGS = ValidationSettings()
_KEYS = SealingKeys.parse({"keys": [{"kty": "oct", "kid": "k", "k": base64.urlsafe_b64encode(b"k" * 32).decode()}]})
_POLICY_FILE = Path(tempfile.mkdtemp(prefix="authgate-fuzz-")) / "policy.yaml"


def tokens(data: bytes) -> None:
    """A compact JWS as an attacker sends it (parsed before any signature check)."""
    try:
        parse_compact(data.decode("latin-1"))
    except TokenError:
        pass


def sealed_values(data: bytes) -> None:
    """A sealed facade value (client_id, code, state, refresh token) as a client presents it."""
    try:
        _KEYS.open("code", "https://mcp.example.com", "uid", data.decode("latin-1"))
    except SealError:
        pass


def snapshot_documents(data: bytes) -> None:
    """An admin snapshot push: bounded JSON, then strict compilation."""
    try:
        compile_document(bounded_json.read(data, 1 << 20), _SETTINGS)
    except (InputError, PolicyError):
        pass


def policy_files(data: bytes) -> None:
    """A policy file (YAML stream) through the loader and compiler; issues, never exceptions."""
    _POLICY_FILE.write_bytes(data)
    compile_loaded(load_files([_POLICY_FILE]), 1, _SETTINGS)


def urls(data: bytes) -> None:
    """Every URL and path authgate reads."""
    text = data.decode("latin-1")
    for parse in (parse_url, normalize_path):
        try:
            parse(text)
        except InputError:
            pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "tokens": tokens,
    "sealed_values": sealed_values,
    "snapshot_documents": snapshot_documents,
    "policy_files": policy_files,
    "urls": urls,
}

SEEDS: dict[str, list[bytes]] = {
    "tokens": [b"eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lkcCJ9.AAAA", b"a.b.c"],
    "sealed_values": [
        b"eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIiwia2lkIjoiayJ9..AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA"
    ],
    "snapshot_documents": [b'{"formatVersion": 1, "generation": 1, "policies": [], "secrets": []}'],
    "policy_files": [
        b"apiVersion: authgate.dev/v1alpha1\nkind: OAuthPolicy\nmetadata: {name: a, namespace: b}\n"
        b"spec:\n  resource: https://mcp.example.com/mcp\n  issuers: [{issuer: https://idp.example.com}]\n"
    ],
    "urls": [b"https://user@idp.example.com:8443/a/../b?q#f", b"http://[::1]:80/cb", b"/mcp/%2e%2e/x"],
}


def write_seeds(directory: Path, target: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(SEEDS[target]):
        (directory / f"seed-{index}").write_bytes(seed)
    os.sync()
