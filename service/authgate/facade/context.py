"""What the facade needs from the running service (`FacadeDeps`, built by the public app),
what it keeps per process (`FacadeState`), and what one request's handler gets (`Call`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request

from authgate.facade.clients import ClientDirectory, ClientDocuments
from authgate.facade.guards import RateLimiter, UsedOnce
from authgate.facade.records import R, Sealed
from authgate.facade.upstream import Upstream
from authgate.outbound.discovery import Discovery
from authgate.outbound.egress import EgressClient
from authgate.policy.snapshot import CompiledFacade, CompiledPolicy, Snapshot
from authgate.sealing import SealingKeys


class VerifiedToken(Protocol):
    claims: dict[str, Any]
    scopes: frozenset[str]


class TokenValidator(Protocol):
    """The check port's token validation (TokenError, KeysUnavailable when it fails)."""

    async def validate(self, token: str, policy: CompiledPolicy) -> VerifiedToken: ...


@dataclass(frozen=True)
class FacadeDeps:
    egress: EgressClient  # every outbound call (client metadata documents, the upstream)
    discovery: Discovery  # the upstream's metadata, shared with the JWKS cache and token exchange
    validator: TokenValidator  # upstream access tokens are checked for the policy before a client sees one
    snapshot: Callable[[], Snapshot]  # the policies enforced now
    sealing_keys: Callable[[], SealingKeys | None]  # the current --sealing-keys (None: not there yet)
    forwarded_for_hops: int = 0  # proxies in front of the public port appending to X-Forwarded-For


@dataclass
class FacadeState:
    """Per process: the upstream calls, fetched client documents, and the per-replica guards."""

    deps: FacadeDeps
    upstream: Upstream
    documents: ClientDocuments
    limiter: RateLimiter = field(default_factory=RateLimiter)
    used: UsedOnce = field(default_factory=UsedOnce)
    unrotated: set[str] = field(default_factory=set)  # policies whose upstream was seen not rotating refresh tokens

    @classmethod
    def build(cls, deps: FacadeDeps) -> FacadeState:
        return cls(deps, Upstream(deps.egress, deps.discovery), ClientDocuments(deps.egress))


@dataclass(frozen=True)
class Call:
    """One request to one policy's facade endpoint, as its handler sees it."""

    request: Request
    policy: CompiledPolicy
    facade: CompiledFacade
    sealing: SealingKeys | None  # None only for the metadata endpoint
    cors: dict[str, str]
    state: FacadeState

    @property
    def keys(self) -> SealingKeys:
        assert self.sealing is not None, "only the metadata endpoint runs without sealing keys"
        return self.sealing

    @property
    def clients(self) -> ClientDirectory:
        return ClientDirectory(self.keys, self.state.documents)

    def seal(self, record: Sealed) -> str:
        """`record` sealed for this facade and policy."""
        return record.seal(self.keys, self.facade.issuer, self.policy.uid)

    def open(self, kind: type[R], sealed: str) -> R:
        """The `kind` of record sealed in `sealed` for this facade and policy; SealError otherwise."""
        return kind.open(self.keys, self.facade.issuer, self.policy.uid, sealed)
