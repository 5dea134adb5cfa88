"""The running auth service: the current snapshot and everything that outlives one.

The snapshot is replaced whole (one attribute assignment on the event loop); key sets
and caches are kept in step with it. Adapters call `check()` and nothing else.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field

from authgate import metrics
from authgate.check.decision import Decision, internal_error
from authgate.check.pipeline import decide
from authgate.check.request import CheckRequest
from authgate.check.tokens.dpop import NONCE_PURPOSE, NonceCodec, ProofVerifier
from authgate.check.tokens.jwks import JwksSettings, KeyStore
from authgate.check.tokens.validator import TokenValidator
from authgate.check.tokens.verified_cache import VerifiedTokenCache
from authgate.errors import PolicyIssue, StaleSnapshot
from authgate.outbound.discovery import Discovery
from authgate.outbound.egress import EgressClient, EgressPolicy
from authgate.outbound.exchange import TokenExchanger
from authgate.policy import EMPTY_SNAPSHOT, Snapshot, ValidationSettings
from authgate.sealing import SealingKeyFile, SealingKeys
from authgate.server.decision_cache import CachedAnswer, DecisionCache
from authgate.server.logs import DecisionLog

decision_log = DecisionLog()
log = logging.getLogger("authgate")


@dataclass(frozen=True)
class ServiceSettings:
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    jwks: JwksSettings = field(default_factory=JwksSettings)
    token_cache_entries: int = 100_000
    token_cache_ttl: float = 300.0
    forwarded_for_hops: int = 0  # proxies in front of the public port appending to X-Forwarded-For
    decision_cache_entries: int = 10_000  # rendered answers (decision_cache.py); 0: off
    dpop_replay_entries: int = 100_000  # DPoP jti remembered per replica (full: proofs are refused)
    client_cert_header: str | None = None  # the one header trusted to carry the client certificate

    @property
    def validation(self) -> ValidationSettings:
        return ValidationSettings(insecure_http=self.egress.insecure_http)


class AuthService:
    def __init__(self, settings: ServiceSettings = ServiceSettings()) -> None:
        self.settings = settings
        self.egress = EgressClient(settings.egress)
        self.discovery = Discovery(self.egress)
        self.keys = KeyStore(self.egress, settings.jwks, self.discovery)
        self.validator = TokenValidator(
            self.keys, VerifiedTokenCache(settings.token_cache_entries, settings.token_cache_ttl), egress=self.egress
        )
        self.answers = DecisionCache(self.keys, settings.decision_cache_entries, settings.token_cache_ttl)
        self.exchanger = TokenExchanger(settings.egress, self.egress, self.discovery)
        self.snapshot: Snapshot = EMPTY_SNAPSHOT
        self.loaded = False
        self.draining = False  # on SIGTERM: not ready any more, still answering (listeners.serve)
        self.loaded_at: float | None = None
        # The facade's stateless storage: fixed keys, or a file followed as it changes.
        self.sealing: SealingKeys | SealingKeyFile | None = None
        # DPoP nonces need keys every replica shares: the sealing keys; without them, this
        # process's own (then a nonce is accepted by the replica that issued it only).
        self._process_keys = SealingKeys.ephemeral()
        self.proofs = ProofVerifier(NonceCodec(self._nonce_keys), settings.dpop_replay_entries)

    @property
    def sealing_keys(self) -> SealingKeys | None:
        if isinstance(self.sealing, SealingKeyFile):
            return self.sealing.current()
        return self.sealing

    def _nonce_keys(self, policy_uid: str) -> tuple[bytes, ...]:
        return (self.sealing_keys or self._process_keys).derived_keys(NONCE_PURPOSE, policy_uid)

    async def start(self) -> None:
        decision_log.bind(asyncio.get_running_loop())  # for lines the gRPC port's threads write
        self.keys.start()

    async def stop(self) -> None:
        decision_log.flush()
        await self.keys.stop()
        await self.exchanger.aclose()
        await self.egress.aclose()

    def load(self, snapshot: Snapshot) -> bool:
        """Enforce `snapshot`. False when it is the one already enforced (idempotent push)."""
        current = self.snapshot
        if self.loaded:
            if snapshot.generation < current.generation:
                raise StaleSnapshot(
                    [
                        PolicyIssue(
                            "<snapshot>",
                            None,
                            "generation",
                            f"{snapshot.generation} is older than the enforced {current.generation}",
                        )
                    ]
                )
            if snapshot.generation == current.generation:
                if snapshot.version == current.version:
                    return False
                raise StaleSnapshot(
                    [
                        PolicyIssue(
                            "<snapshot>",
                            None,
                            "generation",
                            f"generation {snapshot.generation} is enforced with other content",
                        )
                    ]
                )
        self.keys.sync(issuer.key_source for policy in snapshot.policies for issuer in policy.issuers)
        self.snapshot = snapshot  # the atomic swap
        self.answers.clear()  # (dead anyway: decided under another generation)
        self.loaded, self.loaded_at = True, time.time()
        metrics.SNAPSHOT_GENERATION.set(snapshot.generation)
        metrics.SNAPSHOT_POLICIES.set(len(snapshot.policies))
        log.info(
            "snapshot loaded",
            extra={"generation": snapshot.generation, "version": snapshot.version, "policies": len(snapshot.policies)},
        )
        return True

    async def check(self, request: CheckRequest, dialect: str) -> Decision:
        return (await self.check_and_record(request, dialect))[0]

    async def check_and_record(self, request: CheckRequest, dialect: str) -> tuple[Decision, str | None]:
        """The decision, counted and logged; and its decision line's fixed fields (`record`)."""
        started = time.perf_counter()
        try:
            decision = await decide(self.snapshot, request, self.validator, self.exchanger, proofs=self.proofs)
        except Exception:  # fail closed: an internal error never becomes an allow, nor a 500
            metrics.ERRORS.labels(where="check").inc()
            log.exception("check failed", extra={"request_id": request.request_id})
            decision = internal_error()
        return decision, self.record(request, decision, dialect, time.perf_counter() - started)

    def remember(
        self,
        key: tuple,
        request: CheckRequest,
        decision: Decision,
        dialect: str,
        log_fields: str | None,
        generation: int,
        answer: tuple[int, tuple[tuple[bytes, bytes], ...], bytes],
    ) -> None:
        """Keep a rendered answer for the requests with the same inputs (decision_cache.py),
        from the second time they are decided on."""
        if not self.answers.admit(key):
            return
        token = decision.token
        key_source = token.issuer.key_source if token is not None and not token.introspected else None
        fields = log_fields or decision_log.encode_fields(decision_fields(request, decision, dialect))
        status, headers, body = answer
        answer = CachedAnswer(status, headers, body, decision.allowed, decision.reason, fields, generation, key_source)
        self.answers.put(key, answer, decision, time.time())

    def record_cached(self, answer: CachedAnswer, request_id: str, dialect: str, elapsed: float) -> None:
        """`record` for an answer from the decision cache: its fields were encoded once."""
        metrics.count_check(dialect, answer.allowed, answer.reason, elapsed)
        if answer.log_fields is not None and decision_log.enabled():
            decision_log.write(request_id, answer.log_fields, round(elapsed * 1000, 3))

    def record(self, request: CheckRequest, decision: Decision, dialect: str, elapsed: float) -> str | None:
        """Count the check and write its decision line; returns the line's fixed fields
        (None when the decision log is off), which a cached decision reuses."""
        metrics.count_check(dialect, decision.allowed, decision.reason, elapsed)
        if not decision_log.enabled():
            return None
        fields = decision_fields(request, decision, dialect)
        fixed = decision_log.encode_fields(fields)
        decision_log.write(request.request_id, fixed, round(elapsed * 1000, 3), fields)
        return fixed

    def status_tag(self) -> str:
        """A weak ETag of `status()`: the same while the snapshot and every key set's state
        are (the key age, which changes all the time, is not part of it)."""
        snapshot = self.snapshot
        state = repr((self.loaded, snapshot.generation, snapshot.version, self.keys.fingerprint())).encode()
        return f'W/"{hashlib.sha256(state).hexdigest()[:32]}"'

    def status(self, policies: bool = True) -> dict:
        """What the admin API reports: versions and per-policy, per-issuer state (not with
        `policies=False`); never secrets."""
        snapshot = self.snapshot
        versions = {"ready": self.loaded, "generation": snapshot.generation, "version": snapshot.version}
        if not policies:
            return versions
        return {
            **versions,
            "policies": [
                {
                    "policy": policy.ref,
                    "uid": policy.uid,
                    "resource": policy.resource,
                    "hosts": list(policy.hosts),
                    "pathPrefixes": list(policy.path_prefixes),
                    "mode": "DryRun" if policy.dry_run else "Enforce",
                    "issuers": [self.keys.state_of(issuer.key_source) for issuer in policy.issuers],
                }
                for policy in snapshot.policies
            ],
        }


def decision_fields(request: CheckRequest, decision: Decision, dialect: str) -> dict:
    """What a decision line says, but the request id and the latency."""
    token = decision.token
    return {
        "dialect": dialect,
        "policy": decision.policy.ref if decision.policy else None,
        "rule": decision.rule.index if decision.rule else None,
        "decision": "allow" if decision.allowed else "deny",
        "status": decision.status,
        "reason": decision.reason,
        "detail": decision.description if not decision.allowed else None,
        "dry_run_reason": decision.dry_run_reason,
        "subject": token.subject if token else None,
        "client_id": token.client_id if token else None,
        "binding": _binding(token),
        "host": request.host,
        "method": request.method,
        "path": request.path,
    }


def _binding(token) -> str | None:
    """How the token was bound to its sender, for the decision log: dpop, mtls, both or None."""
    if token is None:
        return None
    held = [name for name, value in (("dpop", token.jkt), ("mtls", token.x5t)) if value is not None]
    return "+".join(held) or None
