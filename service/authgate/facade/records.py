"""The facade's sealed records: what it hands out sealed instead of storing (`sealing.py`).

Each record is a frozen dataclass with readable names; `to_sealed()` and `from_sealed()`
keep the short wire keys of the payload (`cid`, `ruri`, `rgiven`, `cc`, `res`, `uc`, `v`,
`b`, `rt`, ...) unchanged, so values sealed by an earlier version still open (a wrapped
refresh token lives 30 days). A payload that opens but lacks a key or has one of the wrong
type could only come from a forged key: it fails closed with SealError.

    ConsentForm     "consent"      the checked request in the consent form, bound to the browser
    Transaction     "transaction"  the upstream round trip's `state`
    Code            "code"         the facade's authorization code
    WrappedRefresh  "refresh"      an upstream refresh token, bound to the client
    RememberedConsent "remember"   the clients (and scopes) a browser approved
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from authgate.errors import SealError
from authgate.facade.authorization_request import AuthorizationRequest
from authgate.sealing import SealingKeys

TRANSACTION_TTL = 600  # consent page and upstream round trip (≤ 10 min)
CODE_TTL = 60  # the facade's authorization codes
REFRESH_TTL = 30 * 24 * 3600  # a wrapped refresh token; the upstream's own expiry still applies
REMEMBER_TTL = 30 * 24 * 3600

R = TypeVar("R", bound="Sealed")


def _field(payload: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = payload.get(key)
    if key not in payload or not isinstance(value, kind):
        raise SealError("sealed record is malformed")
    return value


def _strings(payload: dict[str, Any], key: str) -> tuple[str, ...]:
    value = _field(payload, key, list)
    if not all(isinstance(item, str) for item in value):
        raise SealError("sealed record is malformed")
    return tuple(value)


def _new_jti() -> str:
    return secrets.token_hex(16)


class Sealed:
    """Sealing and opening for the records below (each names its purpose and lifetime)."""

    PURPOSE: ClassVar[str]
    TTL: ClassVar[int]

    def to_sealed(self) -> dict[str, Any]:
        raise NotImplementedError

    def seal(self, keys: SealingKeys, issuer: str, policy_uid: str) -> str:
        return keys.seal(self.PURPOSE, issuer, policy_uid, self.to_sealed(), self.TTL)

    @classmethod
    def open(cls: type[R], keys: SealingKeys, issuer: str, policy_uid: str, sealed: str) -> R:
        """The record sealed in `sealed`; SealError when it does not open here or is malformed."""
        return cls.from_sealed(keys.open(cls.PURPOSE, issuer, policy_uid, sealed))

    @classmethod
    def from_sealed(cls: type[R], payload: dict[str, Any]) -> R:
        raise NotImplementedError


def request_to_sealed(request: AuthorizationRequest) -> dict[str, Any]:
    return {
        "cid": request.client_id,
        "ruri": request.redirect_uri,
        "rgiven": request.redirect_uri_given,
        "scope": list(request.scope),
        "state": request.state,
        "cc": request.code_challenge,
        "res": request.resource,
    }


def request_from_sealed(payload: dict[str, Any]) -> AuthorizationRequest:
    return AuthorizationRequest(
        client_id=_field(payload, "cid", str),
        client={},
        redirect_uri=_field(payload, "ruri", str),
        scope=_strings(payload, "scope"),
        state=_field(payload, "state", (str, type(None))),
        code_challenge=_field(payload, "cc", str),
        resource=_field(payload, "res", str),
        redirect_uri_given=_field(payload, "rgiven", bool),
    )


@dataclass(frozen=True)
class ConsentForm(Sealed):
    """The authorization request the consent page asks about, for one browser."""

    PURPOSE: ClassVar[str] = "consent"
    TTL: ClassVar[int] = TRANSACTION_TTL
    request: AuthorizationRequest
    browser_hash: str

    def to_sealed(self) -> dict[str, Any]:
        return {"req": request_to_sealed(self.request), "b": self.browser_hash}

    @classmethod
    def from_sealed(cls, payload: dict[str, Any]) -> ConsentForm:
        return cls(request_from_sealed(_field(payload, "req", dict)), _field(payload, "b", str))


@dataclass(frozen=True)
class Transaction(Sealed):
    """The upstream round trip: sent as `state`, back at the callback in the same browser."""

    PURPOSE: ClassVar[str] = "transaction"
    TTL: ClassVar[int] = TRANSACTION_TTL
    request: AuthorizationRequest
    upstream_verifier: str  # the facade's own PKCE verifier with the upstream
    browser_hash: str
    jti: str = field(default_factory=_new_jti)

    def to_sealed(self) -> dict[str, Any]:
        return {
            "req": request_to_sealed(self.request),
            "v": self.upstream_verifier,
            "b": self.browser_hash,
            "jti": self.jti,
        }

    @classmethod
    def from_sealed(cls, payload: dict[str, Any]) -> Transaction:
        return cls(
            request=request_from_sealed(_field(payload, "req", dict)),
            upstream_verifier=_field(payload, "v", str),
            browser_hash=_field(payload, "b", str),
            jti=_field(payload, "jti", str),
        )


@dataclass(frozen=True)
class Code(Sealed):
    """The facade's authorization code: the request's fields, the upstream code and verifier."""

    PURPOSE: ClassVar[str] = "code"
    TTL: ClassVar[int] = CODE_TTL
    request: AuthorizationRequest
    upstream_code: str
    upstream_verifier: str
    jti: str = field(default_factory=_new_jti)

    def to_sealed(self) -> dict[str, Any]:
        return request_to_sealed(self.request) | {
            "uc": self.upstream_code,
            "v": self.upstream_verifier,
            "jti": self.jti,
        }

    @classmethod
    def from_sealed(cls, payload: dict[str, Any]) -> Code:
        return cls(
            request=request_from_sealed(payload),
            upstream_code=_field(payload, "uc", str),
            upstream_verifier=_field(payload, "v", str),
            jti=_field(payload, "jti", str),
        )


@dataclass(frozen=True)
class WrappedRefresh(Sealed):
    """An upstream refresh token as the client holds it: bound to the client, with the grant's scope."""

    PURPOSE: ClassVar[str] = "refresh"
    TTL: ClassVar[int] = REFRESH_TTL
    client_id: str
    upstream_token: str
    scope: tuple[str, ...]
    jti: str = field(default_factory=_new_jti)

    def to_sealed(self) -> dict[str, Any]:
        return {"cid": self.client_id, "rt": self.upstream_token, "scope": list(self.scope), "jti": self.jti}

    @classmethod
    def from_sealed(cls, payload: dict[str, Any]) -> WrappedRefresh:
        return cls(
            client_id=_field(payload, "cid", str),
            upstream_token=_field(payload, "rt", str),
            scope=_strings(payload, "scope"),
            jti=_field(payload, "jti", str),
        )


@dataclass(frozen=True)
class RememberedConsent(Sealed):
    """`consent: remember`: per browser, the clients approved (by hash) and their scopes, oldest first."""

    PURPOSE: ClassVar[str] = "remember"
    TTL: ClassVar[int] = REMEMBER_TTL
    browser_hash: str
    clients: dict[str, list[str]]

    def to_sealed(self) -> dict[str, Any]:
        return {"b": self.browser_hash, "clients": self.clients}

    @classmethod
    def from_sealed(cls, payload: dict[str, Any]) -> RememberedConsent:
        clients = _field(payload, "clients", dict)
        if not all(isinstance(scopes, list) and all(isinstance(s, str) for s in scopes) for scopes in clients.values()):
            raise SealError("sealed record is malformed")
        return cls(_field(payload, "b", str), clients)
