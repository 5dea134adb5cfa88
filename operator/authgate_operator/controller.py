"""The reconciliation loop: one round at a time, triggered by policy changes, by a push
that still has to reach a replica, and by a periodic resync (rotated Secrets, new pods).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from kubernetes_asyncio.client.exceptions import ApiException

from authgate.errors import SnapshotTooLarge
from authgate.policy import ValidationSettings
from authgate_operator.kube import Kube
from authgate_operator.reconcile import (
    Compiled,
    SyncState,
    compile_cluster,
    desired_status,
    policy_ref,
    secret_names,
    status_patch,
)
from authgate_operator.replicas import Replicas

log = logging.getLogger("authgate.operator")


@dataclass(frozen=True)
class ControllerConfig:
    service: str  # namespace/name of the auth Service (its admin port)
    snapshot_secret: str
    sealing_secret: str | None = None
    resync_seconds: float = 10.0
    retry_seconds: float = 1.0
    validation: ValidationSettings = field(default_factory=ValidationSettings)


def _spec_key(obj: Mapping) -> tuple:
    metadata = obj.get("metadata", {})
    return (
        json.dumps(obj.get("spec"), sort_keys=True),
        metadata.get("generation"),
        metadata.get("uid"),
        metadata.get("creationTimestamp"),
    )


def _fingerprint(objects: list[dict], secrets: Mapping[tuple[str, str], Mapping[str, bytes]]) -> bytes:
    """What compilation depends on: every policy's identity, age and spec, and the Secret values."""
    digest = hashlib.sha256()
    for obj in sorted(objects, key=policy_ref):
        digest.update(repr(_spec_key(obj)).encode())
        digest.update(policy_ref(obj).encode())
    for key in sorted(secrets):
        digest.update(repr((key, sorted(secrets[key].items()))).encode())
    return digest.digest()


def _resource_version(obj: Mapping) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", "0"))
    except ValueError:
        return 0


class Controller:
    def __init__(self, kube: Kube, replicas: Replicas, config: ControllerConfig) -> None:
        self.kube = kube
        self.replicas = replicas
        self.config = config
        self.policies: dict[str, dict] = {}
        self.generation = 0
        self.version: str | None = None
        self.body: bytes = b""
        self.document: dict = {}
        self.stored = False
        self._compiled: Compiled | None = None
        self._compiled_inputs: bytes = b""
        self._wake = asyncio.Event()
        self._seeded = asyncio.Event()
        self._events_sent: dict[tuple[str, str], str] = {}

    # -- inputs ----------------------------------------------------------------
    def seed(self, objects: list[dict]) -> None:
        """The initial list: nothing is pushed before it, so a restart never pushes a partial set."""
        for obj in objects:
            self.observe("ADDED", obj)
        self._seeded.set()

    def observe(self, event_type: str | None, obj: Mapping) -> None:
        ref = policy_ref(obj)
        current = self.policies.get(ref)
        if event_type == "DELETED":
            if current is not None and current.get("metadata", {}).get("uid") == obj.get("metadata", {}).get("uid"):
                del self.policies[ref]
                self._wake.set()
            return
        if current is not None and _resource_version(obj) < _resource_version(current):
            return  # an older copy (kopf's initial listing racing our own list)
        self.policies[ref] = json.loads(json.dumps(obj))
        if current is None or _spec_key(current) != _spec_key(obj):
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # -- the loop ----------------------------------------------------------------
    async def run(self) -> None:
        self.generation, self.version = await self.kube.read_snapshot(self.config.snapshot_secret)
        if self.config.sealing_secret and await self.kube.ensure_sealing_secret(self.config.sealing_secret):
            log.info("created the sealing-key Secret", extra={"secret": self.config.sealing_secret})
        await self._seeded.wait()
        while True:
            try:
                pending = await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile failed; retrying")
                pending = True
            timeout = self.config.retry_seconds if pending else self.config.resync_seconds
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
                await asyncio.sleep(0.02)  # gather a burst of edits into one round
            except TimeoutError:
                pass
            self._wake.clear()

    async def _secrets(self, objects: list[dict]) -> dict[tuple[str, str], dict[str, bytes]]:
        wanted = {(obj["metadata"]["namespace"], name) for obj in objects for name in secret_names(obj)}
        found = {}
        for namespace, name in sorted(wanted):
            data = await self.kube.secret_data(namespace, name)
            if data is not None:
                found[(namespace, name)] = data
        return found

    async def reconcile(self) -> bool:
        """One round. True when something is still pending (a replica not yet in sync)."""
        objects = list(self.policies.values())
        secrets = await self._secrets(objects)
        inputs = _fingerprint(objects, secrets)
        if inputs != self._compiled_inputs:  # a resync with nothing changed compiles nothing
            self._compiled = compile_cluster(objects, secrets, self.config.validation)
            self._compiled_inputs = inputs
        compiled = self._compiled
        if compiled.version != self.version or not self.body:
            if compiled.version != self.version:
                self.generation += 1
            self._prepare(compiled)
        push_error = await self._store() if not self.stored else None
        endpoints = await self.kube.endpoints(self.config.service)
        reports = await self.replicas.sync(endpoints, self.generation, compiled.version, self.body)
        newer = max((r.generation or 0 for r in reports), default=0)
        if newer > self.generation:  # a replica already has a later generation: go past it
            self.generation = newer + 1
            self._prepare(compiled)
            push_error = await self._store() or push_error
            reports = await self.replicas.sync(endpoints, self.generation, compiled.version, self.body)
        synced = sum(1 for r in reports if r.enforces(self.generation, compiled.version))
        errors = [r.error for r in reports if r.error]
        push_error = push_error or (errors[0] if errors else None)
        sync = SyncState(
            generation=self.generation,
            replicas=len(endpoints),
            synced=synced,
            push_error=push_error,
            issuer_state=self._issuer_state(reports),
        )
        await self._report(objects, compiled, sync)
        return synced < len(endpoints)

    def _prepare(self, compiled: Compiled) -> None:
        self.document = compiled.document(self.generation)
        self.body = json.dumps(self.document, separators=(",", ":")).encode()
        self.version = compiled.version
        self.stored = False
        log.info(
            "snapshot compiled",
            extra={"generation": self.generation, "version": compiled.version, "policies": len(compiled.accepted)},
        )

    async def _store(self) -> str | None:
        """Keep the last good snapshot in its Secret; retried every round until it is stored."""
        try:
            await self.kube.write_snapshot(self.config.snapshot_secret, self.document, self.version)
        except SnapshotTooLarge as error:
            log.error("snapshot not stored", extra={"error": str(error)})
            return str(error)
        except ApiException as error:
            log.error("snapshot not stored", extra={"status": error.status, "reason": error.reason})
            return (
                f"the snapshot Secret {self.config.snapshot_secret} cannot be written ({error.status} {error.reason})"
            )
        self.stored = True
        return None

    @staticmethod
    def _issuer_state(reports) -> dict[str, list[dict]]:
        for report in sorted(reports, key=lambda r: r.endpoint.address):
            if report.policies:
                return {
                    entry["policy"]: [
                        {
                            k: v
                            for k, v in {
                                "issuer": i.get("issuer"),
                                "keys": i.get("keys"),
                                "lastError": i.get("lastError"),
                            }.items()
                            if v is not None
                        }
                        for i in entry.get("issuers", [])
                    ]
                    for entry in report.policies
                    if "policy" in entry
                }
        return {}

    async def _report(self, objects: list[dict], compiled: Compiled, sync: SyncState) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for obj in objects:
            ref = policy_ref(obj)
            patch = status_patch(obj.get("status"), desired_status(obj, compiled, sync), now)
            if patch is not None:
                namespace, name = ref.split("/", 1)
                try:
                    await self.kube.patch_status(namespace, name, patch)
                except Exception as error:  # a vanished object must not stop the others
                    log.warning("status patch failed", extra={"policy": ref, "error": type(error).__name__})
                    continue
                current = self.policies.get(ref)
                if current is not None:
                    current["status"] = {k: v for k, v in patch.items() if v is not None}
            await self._events(obj, compiled, sync)

    async def _events(self, obj: dict, compiled: Compiled, sync: SyncState) -> None:
        ref = policy_ref(obj)
        problems = compiled.issues.get(ref)
        message = "; ".join(str(p) for p in problems) if problems else ""
        if self._events_sent.get((ref, "Rejected")) != message:
            self._events_sent[(ref, "Rejected")] = message
            if problems:
                await self.kube.event(obj, "Warning", problems[0].reason, message)
        push = sync.push_error if ref in compiled.accepted else None
        if push and self._events_sent.get((ref, "PushFailed")) != push:
            self._events_sent[(ref, "PushFailed")] = push
            await self.kube.event(obj, "Warning", "PushFailed", push)
