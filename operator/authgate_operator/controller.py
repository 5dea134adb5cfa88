"""The reconciliation loop: one round at a time over Kopf's policy index, woken by policy
events, by a push that still has to reach a replica, and by a periodic resync (rotated
Secrets, new pods). Each round gathers inputs, asks `plan.py` what to do, and does it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from kubernetes_asyncio.client.exceptions import ApiException

from authgate.collector import collector_paused
from authgate.errors import SnapshotTooLarge
from authgate.policy import ValidationSettings
from authgate_operator.cluster import (
    Compiled,
    ParsedPolicy,
    PolicyParser,
    compile_cluster,
    current_policies,
    inputs_key,
    policies_key,
    policy_ref,
)
from authgate_operator.kube import Kube
from authgate_operator.plan import (
    Published,
    Quiet,
    Report,
    Written,
    go_past,
    plan_report,
    plan_snapshot,
    sync_state,
)
from authgate_operator.replicas import Replicas
from authgate_operator.status import SyncState

log = logging.getLogger("authgate.operator")


@dataclass(frozen=True)
class ControllerConfig:
    service: str  # namespace/name of the auth Service (its admin port)
    snapshot_secret: str
    sealing_secret: str | None = None
    namespaces: tuple[str, ...] = ()  # watched namespaces; () is all
    resync_seconds: float = 10.0
    retry_seconds: float = 1.0
    validation: ValidationSettings = field(default_factory=ValidationSettings)


class Controller:
    def __init__(self, kube: Kube, replicas: Replicas, config: ControllerConfig, policies: Mapping) -> None:
        self.kube = kube
        self.replicas = replicas
        self.config = config
        self.index = policies  # Kopf's index: namespace/name → the policy's bodies
        self.parser = PolicyParser()
        self.published = Published()
        self.compiled: Compiled | None = None
        self.inputs = b""
        self.written: dict[str, Written] = {}
        self.events_sent: dict[tuple[str, str], str] = {}
        self.quiet = Quiet()
        self._wake = asyncio.Event()
        self._listed = asyncio.Event()

    def policies_changed(self) -> None:
        """A policy event: Kopf runs handlers only once its initial listing is indexed."""
        self._listed.set()
        self._wake.set()

    def policies(self) -> list[dict]:
        return current_policies(body for ref in list(self.index) for body in self.index[ref])

    # -- the loop ----------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                await self._start()
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("start-up failed; retrying")
                await asyncio.sleep(self.config.resync_seconds)
        await self._rounds()

    async def _start(self) -> None:
        generation, version = await self.kube.read_snapshot(self.config.snapshot_secret)
        self.published = Published(generation, version)
        if self.config.sealing_secret and await self.kube.ensure_sealing_secret(self.config.sealing_secret):
            log.info("created the sealing-key Secret", extra={"secret": self.config.sealing_secret})
        await self._until_listed()

    async def _rounds(self) -> None:
        pending, seen, woken = True, None, False
        while True:
            # A round at 10,000 policies makes megabytes of short-lived objects (the policies'
            # copies, replica states, status reports) over a heap of parsed policies, and the
            # collector walked that heap again and again: it waits until the round is over.
            with collector_paused():
                objects = self.policies()
                parsed = self.parser.parse(objects)
                key = policies_key(parsed)
                if not (woken and not pending and key == seen):  # a status-only event changes nothing
                    seen = key
                    try:
                        pending = await self.reconcile(objects, parsed, key)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("reconcile failed; retrying")
                        pending = True
                del objects, parsed
            woken = await self._sleep(self.config.retry_seconds if pending else self.config.resync_seconds)

    async def _until_listed(self) -> None:
        """Nothing is pushed before Kopf has listed every policy, so a restart never pushes a
        partial set. With no policy at all no handler ever runs: the API says there is none."""
        while not self._listed.is_set():
            if not await self.kube.any_policy(self.config.namespaces):
                return
            try:
                await asyncio.wait_for(self._listed.wait(), self.config.resync_seconds)
            except TimeoutError:
                pass

    async def _sleep(self, seconds: float) -> bool:
        """True when woken by a policy event, False on timeout."""
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
            await asyncio.sleep(0.02)  # gather a burst of edits into one round
            woken = True
        except TimeoutError:
            woken = False
        self._wake.clear()
        return woken

    # -- one round ----------------------------------------------------------------
    async def reconcile(self, objects: list[dict], parsed: list[ParsedPolicy], key: bytes) -> bool:
        """One round. True when something is still pending (a replica not yet in sync)."""
        secrets = await self._secrets(parsed)
        inputs = inputs_key(key, secrets)
        if inputs != self.inputs or self.compiled is None:  # a resync with nothing changed compiles nothing
            self.compiled = compile_cluster(parsed, secrets, self.config.validation)
            self.inputs = inputs
        compiled = self.compiled
        self._publish(plan_snapshot(compiled, self.published), compiled)
        # Replicas first, then the Secret: writing megabytes through the API server and etcd
        # would delay enforcement for nothing. A crash in between is the case `go_past`
        # covers: a restarted operator finds replicas past the stored generation.
        endpoints = await self.kube.endpoints(self.config.service)
        reports = await self._sync(endpoints)
        past = go_past(compiled, self.published, reports)
        if past is not None:
            self._publish(past, compiled)
            reports = await self._sync(endpoints)
        store_error = await self._store()
        sync = sync_state(self.published, len(endpoints), reports, store_error)
        await self._report(objects, compiled, sync)
        return sync.synced < len(endpoints)

    def _publish(self, published: Published, compiled: Compiled) -> None:
        if published is not self.published:
            log.info(
                "snapshot compiled",
                extra={
                    "generation": published.generation,
                    "version": published.version,
                    "policies": len(compiled.accepted),
                },
            )
        self.published = published

    async def _secrets(self, parsed: Iterable[ParsedPolicy]) -> dict[tuple[str, str], dict[str, bytes]]:
        wanted = {(p.ref.split("/", 1)[0], name) for p in parsed for name in p.secret_names}
        found = {}
        for namespace, name in sorted(wanted):
            data = await self.kube.secret_data(namespace, name)
            if data is not None:
                found[(namespace, name)] = data
        return found

    async def _sync(self, endpoints):
        published = self.published
        return await self.replicas.sync(endpoints, published.generation, published.version, published.body)

    async def _store(self) -> str | None:
        """Keep the last good snapshot in its Secret; retried every round until it is stored."""
        if self.published.stored:
            return None
        ref = self.config.snapshot_secret
        try:
            await self.kube.write_snapshot(ref, self.published.body, self.published.generation, self.published.version)
        except SnapshotTooLarge as error:
            log.error("snapshot not stored", extra={"error": str(error)})
            return str(error)
        except ApiException as error:
            log.error("snapshot not stored", extra={"status": error.status, "reason": error.reason})
            return f"the snapshot Secret {ref} cannot be written ({error.status} {error.reason})"
        self.published = replace(self.published, stored=True)
        return None

    async def _report(self, objects: list[dict], compiled: Compiled, sync: SyncState) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        report: Report = plan_report(objects, compiled, sync, self.written, self.events_sent, now, self.quiet)
        self.events_sent, self.quiet = report.events_sent, report.quiet
        present = {policy_ref(obj) for obj in objects}
        self.written = {ref: w for ref, w in self.written.items() if ref in present}
        for item in report.policies:
            obj, ref = item.policy, policy_ref(item.policy)
            if item.patch is not None:
                namespace, name = ref.split("/", 1)
                try:
                    version = await self.kube.patch_status(namespace, name, item.patch)
                except Exception as error:  # a vanished object must not stop the others
                    log.warning("status patch failed", extra={"policy": ref, "error": type(error).__name__})
                    continue
                status = {k: v for k, v in item.patch.items() if v is not None}
                self.written[ref] = Written(obj.get("metadata", {}).get("uid"), version, status)
            for event in item.events:
                await self.kube.event(dict(obj), event.type, event.reason, event.message)
