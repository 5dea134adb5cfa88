"""Sealed values: the facade's stateless storage (registrations, transactions, codes,
wrapped refresh tokens).

A sealed value is a compact JWE (`dir`, A256GCM) whose key is derived with HKDF-SHA256
from a master key of `--sealing-keys` and the value's purpose, facade issuer and policy
uid; the plaintext repeats them with an expiry and all are checked on opening. So a value
sealed for one purpose, facade or policy never opens as another, and never after its
expiry. Rotation by `kid`: the newest key (last in the file) seals, every key opens.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwcrypto import jwe, jwk
from jwcrypto.common import JWException

from authgate import bounded_json
from authgate.errors import SealError, SealingKeyError

log = logging.getLogger("authgate")
_SALT = b"authgate-sealing-v1"
MIN_KEY_BYTES = 32
MAX_SEALED_BYTES = 16 * 1024
MAX_HEADER_BYTES = 1024  # {"alg":"dir","enc":"A256GCM","kid":...}
MAX_KEY_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class MasterKey:
    kid: str
    secret: bytes = field(repr=False)


def _b64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _protected_header(sealed: str) -> dict[str, Any]:
    """The JWE protected header of a sealed value, parsed within bounds; SealError otherwise."""
    try:
        return bounded_json.read_object(_b64url(sealed.split(".", 1)[0]), MAX_HEADER_BYTES)
    except (ValueError, TypeError):  # binascii.Error and JSONInputError are ValueErrors
        raise SealError("not a sealed value") from None


@functools.lru_cache(maxsize=1024)
def _derive(master: MasterKey, purpose: str, issuer: str, policy_uid: str) -> bytes:
    """The key for one purpose, facade issuer and policy (HKDF-SHA256), derived once per process."""
    info = "\0".join(("authgate", purpose, issuer, policy_uid)).encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(master.secret)


@functools.lru_cache(maxsize=1024)
def _derived_jwk(master: MasterKey, purpose: str, issuer: str, policy_uid: str) -> jwk.JWK:
    secret = _derive(master, purpose, issuer, policy_uid)
    return jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(secret).rstrip(b"=").decode())


@dataclass(frozen=True)
class SealingKeys:
    keys: tuple[MasterKey, ...]  # the last one seals

    @classmethod
    def parse(cls, document: object, source: str = "sealing keys") -> SealingKeys:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list) or not document["keys"]:
            raise SealingKeyError(f"{source}: expected a JWKS with at least one key")
        keys: list[MasterKey] = []
        for index, entry in enumerate(document["keys"]):
            where = f"{source}: keys[{index}]"
            if not isinstance(entry, dict) or entry.get("kty") != "oct":
                raise SealingKeyError(f"{where}: must be a symmetric (oct) key")
            kid, k = entry.get("kid"), entry.get("k")
            if not isinstance(kid, str) or not kid or not isinstance(k, str):
                raise SealingKeyError(f"{where}: needs a kid and k")
            try:
                secret = _b64url(k)
            except ValueError:
                raise SealingKeyError(f"{where}: k is not base64url") from None
            if len(secret) < MIN_KEY_BYTES:
                raise SealingKeyError(f"{where}: k must hold at least {MIN_KEY_BYTES} bytes")
            if any(key.kid == kid for key in keys):
                raise SealingKeyError(f"{where}: kid {kid!r} is used twice")
            keys.append(MasterKey(kid, secret))
        return cls(tuple(keys))

    @classmethod
    def ephemeral(cls) -> SealingKeys:
        """One random key for this process only (what nothing shared needs, e.g. DPoP nonces
        of a single replica without --sealing-keys)."""
        return cls((MasterKey("ephemeral", secrets.token_bytes(MIN_KEY_BYTES)),))

    @classmethod
    def load(cls, path: str | Path) -> SealingKeys:
        try:
            document = bounded_json.read(Path(path).read_bytes(), MAX_KEY_FILE_BYTES)
        except OSError as error:
            raise SealingKeyError(f"{path}: cannot read ({error.strerror})") from None
        except bounded_json.JSONInputError as error:
            raise SealingKeyError(f"{path}: {error}") from None
        return cls.parse(document, str(path))

    @staticmethod
    def _derive(master: MasterKey, purpose: str, issuer: str, policy_uid: str) -> bytes:
        return _derive(master, purpose, issuer, policy_uid)

    def _derived(self, master: MasterKey, purpose: str, issuer: str, policy_uid: str) -> jwk.JWK:
        return _derived_jwk(master, purpose, issuer, policy_uid)

    def derived_keys(self, purpose: str, policy_uid: str) -> tuple[bytes, ...]:
        """Key bytes for one purpose and policy from every master key, the sealing one first:
        a MAC is made with the first and accepted with any (so a rotation keeps it valid)."""
        return tuple(self._derive(master, purpose, "", policy_uid) for master in reversed(self.keys))

    def mac_key(self, purpose: str, issuer: str, policy_uid: str, sealed_with: str) -> bytes:
        """Key bytes for a MAC bound to a sealed value: derived from the master key that
        sealed it (so a rotation does not change MACs of values sealed before it)."""
        kid = _protected_header(sealed_with).get("kid")
        master = next((key for key in self.keys if key.kid == kid), None)
        if master is None:
            raise SealError("sealed with an unknown key")
        return self._derive(master, purpose, issuer, policy_uid)

    def seal(
        self, purpose: str, issuer: str, policy_uid: str, payload: dict[str, Any], ttl: float, now: float | None = None
    ) -> str:
        master = self.keys[-1]
        body = {
            "pur": purpose,
            "iss": issuer,
            "pol": policy_uid,
            "exp": int((now or time.time()) + ttl),
            "dat": payload,
        }
        token = jwe.JWE(
            json.dumps(body, separators=(",", ":")).encode(),
            protected={"alg": "dir", "enc": "A256GCM", "kid": master.kid},
        )
        token.add_recipient(self._derived(master, purpose, issuer, policy_uid))
        return token.serialize(compact=True)

    def open(self, purpose: str, issuer: str, policy_uid: str, sealed: str, now: float | None = None) -> dict:
        if not isinstance(sealed, str) or len(sealed) > MAX_SEALED_BYTES or sealed.count(".") != 4:
            raise SealError("not a sealed value")
        # Checked here, bounded, before jwcrypto parses the same header without bounds.
        header = _protected_header(sealed)
        if header.get("alg") != "dir" or header.get("enc") != "A256GCM":
            raise SealError("not a sealed value")
        master = next((key for key in self.keys if key.kid == header.get("kid")), None)
        if master is None:
            raise SealError("sealed with an unknown key")
        token = jwe.JWE()
        try:
            token.deserialize(sealed, key=self._derived(master, purpose, issuer, policy_uid))
            body = bounded_json.read_object(token.payload, MAX_SEALED_BYTES)
        except (JWException, ValueError):  # JSONInputError is a ValueError
            raise SealError("sealed value does not open here") from None
        if (
            body.get("pur") != purpose
            or body.get("iss") != issuer
            or body.get("pol") != policy_uid
            or not isinstance(body.get("exp"), int)
        ):
            raise SealError("sealed value does not open here")
        if (now or time.time()) >= body["exp"]:
            raise SealError("sealed value expired")
        data = body.get("dat")
        if not isinstance(data, dict):
            raise SealError("sealed value does not open here")
        return data


class SealingKeyFile:
    """`--sealing-keys`, followed as it changes: the Secret it is mounted from may be created
    after the service starts (the operator makes it), and a rotation adds a key. Checked at
    most every `check_every` seconds; a file that stops parsing keeps the last good keys."""

    def __init__(self, path: str | Path, check_every: float = 10.0) -> None:
        self.path = Path(path)
        self._check_every = check_every
        self._checked = float("-inf")
        self._signature: tuple[int, int, int] | None = None
        self._keys: SealingKeys | None = None

    def current(self) -> SealingKeys | None:
        now = time.monotonic()
        if now - self._checked >= self._check_every:
            self._checked = now
            self._reload()
        return self._keys

    def _reload(self) -> None:
        try:
            stat = os.stat(self.path)  # follows the ..data symlink of a Secret volume
        except OSError:
            if self._signature is None and self._keys is None:
                return
            log.warning("sealing keys file vanished; keeping the loaded keys", extra={"path": str(self.path)})
            return
        signature = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        if signature == self._signature:
            return
        self._signature = signature
        try:
            keys = SealingKeys.load(self.path)
        except SealingKeyError as error:
            log.error("sealing keys unusable; keeping the loaded keys", extra={"error": str(error)})
            return
        self._keys = keys
        log.info("sealing keys loaded", extra={"path": str(self.path), "kids": [key.kid for key in keys.keys]})
