"""The operator's decisions, as pure functions of what it observed: which snapshot to
publish and under which generation, and which status patches and Events to write.

The controller gathers the inputs (the policy index, Secrets, endpoints, the replicas'
reports) and applies the results; every rule is here, unit-tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from authgate_operator.cluster import Compiled, policy_ref
from authgate_operator.status import SyncState, desired_status, issuer_state, status_patch


# -- the snapshot -----------------------------------------------------------------------
@dataclass(frozen=True)
class Published:
    """The snapshot every replica must enforce, and whether its Secret holds it yet."""

    generation: int = 0
    version: str | None = None
    body: bytes = b""  # the snapshot document: the PUT body, and what the Secret stores
    stored: bool = False


def publish(compiled: Compiled, generation: int) -> Published:
    return Published(generation, compiled.version, compiled.document(generation))


def plan_snapshot(compiled: Compiled, previous: Published) -> Published:
    """Unchanged content keeps its snapshot; new content gets the next generation (a restarted
    operator starts from the generation and version its Secret stored)."""
    if compiled.version == previous.version and previous.body:
        return previous
    generation = previous.generation + 1 if compiled.version != previous.version else previous.generation
    return publish(compiled, generation)


def go_past(compiled: Compiled, published: Published, reports: Iterable) -> Published | None:
    """A replica already has a later generation (the Secret was not stored): publish past it."""
    newer = max((r.generation or 0 for r in reports), default=0)
    return publish(compiled, newer + 1) if newer > published.generation else None


def sync_state(published: Published, replicas: int, reports: Sequence, store_error: str | None) -> SyncState:
    synced = sum(1 for r in reports if r.enforces(published.generation, published.version))
    errors = [r.error for r in reports if r.error]
    return SyncState(
        generation=published.generation,
        replicas=replicas,
        synced=synced,
        push_error=store_error or (errors[0] if errors else None),
        issuer_state=issuer_state(reports),
    )


# -- status and events ----------------------------------------------------------------------
@dataclass(frozen=True)
class Written:
    """A status the operator wrote, at the resourceVersion the API answered."""

    uid: str | None
    resource_version: int
    status: Mapping


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class PolicyReport:
    """What to write for one policy: a status merge patch (None: unchanged), then Events."""

    policy: Mapping
    patch: dict | None
    events: list[Event]


@dataclass(frozen=True)
class Quiet:
    """The policies whose last report wrote nothing, by what that report read of them: the
    next round skips those it would read the same of (most of them, at 10,000 policies)."""

    compiled: Compiled | None = None
    sync: tuple = ()
    policies: Mapping[str, tuple] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    policies: list[PolicyReport]
    events_sent: dict[tuple[str, str], str]  # (policy, kind) → the last message, so none repeats
    quiet: Quiet = field(default_factory=Quiet)


def current_status(obj: Mapping, written: Mapping[str, Written]) -> Mapping | None:
    """The status a reader sees: ours, when the index has not caught up with our last write."""
    metadata = obj.get("metadata", {})
    mine = written.get(policy_ref(obj))
    try:
        version = int(metadata.get("resourceVersion", "0"))
    except ValueError:
        version = 0
    if mine is not None and mine.uid == metadata.get("uid") and mine.resource_version >= version:
        return mine.status
    return obj.get("status")


def plan_report(
    policies: Sequence[Mapping],
    compiled: Compiled,
    sync: SyncState,
    written: Mapping[str, Written],
    events_sent: Mapping[tuple[str, str], str],
    now: str,
    quiet: Quiet = Quiet(),
) -> Report:
    """What to write for each policy; `quiet` (the last report's) leaves out the policies
    for which nothing it reads has changed since it wrote nothing for them."""
    sent = dict(events_sent)
    reports = []
    sync_key = (sync.generation, sync.replicas, sync.synced, sync.push_error)
    same = quiet.compiled is compiled and quiet.sync == sync_key
    still_quiet = {}
    for obj in policies:
        ref = policy_ref(obj)
        metadata = obj.get("metadata", {})
        read = (metadata.get("uid"), metadata.get("resourceVersion"), written.get(ref), sync.issuer_state.get(ref))
        if same and quiet.policies.get(ref) == read:
            still_quiet[ref] = read
            continue
        desired = desired_status(obj, compiled, sync)
        patch = status_patch(current_status(obj, written), desired, now)
        events = _events(ref, compiled, sync, sent)
        if patch is None and not events:
            still_quiet[ref] = read
        reports.append(PolicyReport(obj, patch, events))
    return Report(reports, sent, Quiet(compiled, sync_key, still_quiet))


def _events(ref: str, compiled: Compiled, sync: SyncState, sent: dict[tuple[str, str], str]) -> list[Event]:
    """A rejection and a push failure are each told once per distinct message."""
    events = []
    problems = compiled.issues.get(ref)
    message = "; ".join(str(p) for p in problems) if problems else ""
    if sent.get((ref, "Rejected")) != message:
        sent[(ref, "Rejected")] = message
        if problems:
            events.append(Event("Warning", problems[0].reason, message))
    push = sync.push_error if ref in compiled.accepted else None
    if push and sent.get((ref, "PushFailed")) != push:
        sent[(ref, "PushFailed")] = push
        events.append(Event("Warning", "PushFailed", push))
    return events
