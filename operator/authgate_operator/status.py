"""What each policy's status says: conditions from the compiled snapshot and the replicas'
reports, and the merge patch that writes them only when a reader would notice a change.
Pure functions: the timestamp is passed in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from authgate_operator.cluster import Compiled, policy_ref


@dataclass(frozen=True)
class SyncState:
    """What the replicas report: how many exist, how many enforce the current snapshot."""

    generation: int
    replicas: int
    synced: int
    push_error: str | None = None
    issuer_state: Mapping[str, list[dict]] = field(default_factory=dict)  # policy ref → issuers' key state


def _condition(kind: str, ok: bool, reason: str, message: str, generation: int | None) -> dict:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message[:1024],
        "observedGeneration": generation,
    }


def desired_status(obj: Mapping, compiled: Compiled, sync: SyncState) -> dict:
    ref = policy_ref(obj)
    generation = obj.get("metadata", {}).get("generation")
    problems = compiled.issues.get(ref, [])
    accepted = ref in compiled.accepted
    if accepted:
        accepted_condition = _condition("Accepted", True, "Valid", "the policy is valid and compiled", generation)
    else:
        reason = problems[0].reason if problems else "Invalid"
        message = "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in problems) or "not accepted"
        accepted_condition = _condition("Accepted", False, reason, message, generation)
    if not accepted:
        synced = _condition("Synced", False, "NotAccepted", "a rejected policy is not pushed", generation)
    elif sync.replicas == 0:
        synced = _condition("Synced", False, "NoReplicas", "the auth service has no endpoints", generation)
    elif sync.synced == sync.replicas:
        synced = _condition(
            "Synced",
            True,
            "Synced",
            f"all {sync.replicas} replicas enforce the current snapshot",
            generation,
        )
    else:
        detail = f": {sync.push_error}" if sync.push_error else ""
        synced = _condition(
            "Synced",
            False,
            "SyncPending",
            f"{sync.synced} of {sync.replicas} replicas enforce the current snapshot{detail}",
            generation,
        )
    ready_ok = accepted and synced["status"] == "True"
    ready = _condition(
        "Ready",
        ready_ok,
        "Ready" if ready_ok else (accepted_condition["reason"] if not accepted else synced["reason"]),
        "enforced by every replica"
        if ready_ok
        else (accepted_condition["message"] if not accepted else synced["message"]),
        generation,
    )
    status: dict = {"observedGeneration": generation, "conditions": [ready, accepted_condition, synced]}
    if accepted:
        status["syncedReplicas"] = f"{sync.synced}/{sync.replicas}"
        if ref in sync.issuer_state:
            status["issuers"] = sync.issuer_state[ref]
    return status


def _comparable(status: Mapping | None) -> dict:
    if not status:
        return {}
    copy = dict(status)
    copy["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions", [])
    ]
    return copy


def status_patch(current: Mapping | None, desired: dict, now: str) -> dict | None:
    """The status to write, or None when nothing a reader would notice changed.

    lastTransitionTime is kept for conditions whose status did not change.
    """
    if _comparable(current) == _comparable(desired):
        return None
    previous = {c.get("type"): c for c in (current or {}).get("conditions", [])}
    for condition in desired["conditions"]:
        before = previous.get(condition["type"])
        if before is not None and before.get("status") == condition["status"] and before.get("lastTransitionTime"):
            condition["lastTransitionTime"] = before["lastTransitionTime"]
        else:
            condition["lastTransitionTime"] = now
    patch = dict(desired)
    for key in ("syncedReplicas", "issuers"):
        patch.setdefault(key, None)  # merge patch: remove what no longer applies
    return patch


def issuer_state(reports: Iterable) -> dict[str, list[dict]]:
    """Each policy's issuers' key state (keys loaded, last error), as the first replica that
    reports any tells it."""
    for report in sorted(reports, key=lambda r: r.endpoint.address):
        if report.policies:
            return {
                entry["policy"]: [_issuer_entry(issuer) for issuer in entry.get("issuers", [])]
                for entry in report.policies
                if "policy" in entry
            }
    return {}


def _issuer_entry(issuer: Mapping) -> dict:
    return {key: issuer.get(key) for key in ("issuer", "keys", "lastError") if issuer.get(key) is not None}
