"""Pure functions of the reconciliation: cluster objects in, snapshot and statuses out.

No I/O and no clock except where a timestamp is passed in, so every rule here has a
unit test without a cluster.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from authgate.errors import PolicyIssue
from authgate.policy import FORMAT_VERSION, ValidationSettings, compile_loaded, parse_manifests
from authgate.policy import secret_names as policy_secret_names
from authgate.policy.model import PolicySpec

SecretData = Mapping[str, bytes]


def policy_ref(obj: Mapping) -> str:
    metadata = obj.get("metadata", {})
    return f"{metadata.get('namespace', 'default')}/{metadata.get('name')}"


def secret_names(obj: Mapping) -> set[str]:
    """Names of the Secrets a policy references (all in its own namespace); none when its
    spec does not parse (it is rejected before any Secret matters)."""
    try:
        spec = PolicySpec.model_validate(obj.get("spec"))
    except ValidationError:
        return set()
    return policy_secret_names(spec)


def clean_manifest(obj: Mapping) -> dict:
    """What of an API object the snapshot carries: identity, age and spec; never status."""
    metadata = obj.get("metadata", {})
    kept = {
        key: metadata[key] for key in ("name", "namespace", "uid", "generation", "creationTimestamp") if key in metadata
    }
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": kept, "spec": obj.get("spec")}


def _secret_manifest(namespace: str, name: str, data: SecretData) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": namespace, "name": name},
        "data": {key: base64.b64encode(value).decode() for key, value in sorted(data.items())},
    }


@dataclass(frozen=True)
class Compiled:
    version: str  # digest of what is enforced; a new version needs a new generation
    policies: list[dict]  # clean manifests of the accepted policies
    secrets: list[dict]  # Secret manifests referenced by accepted policies
    accepted: frozenset[str]
    issues: dict[str, list[PolicyIssue]] = field(default_factory=dict)

    def document(self, generation: int) -> dict:
        return {
            "formatVersion": FORMAT_VERSION,
            "generation": generation,
            "policies": self.policies,
            "secrets": self.secrets,
        }


def compile_cluster(
    objects: Iterable[Mapping],
    secrets: Mapping[tuple[str, str], SecretData],
    settings: ValidationSettings,
) -> Compiled:
    """Validate every policy with the same code as `authgate validate`; leave out the invalid
    ones and the losers of host conflicts; the others are unaffected by their neighbours."""
    manifests = [clean_manifest(obj) for obj in objects]
    documents = [(policy_ref(m), None, m) for m in manifests]
    documents += [
        (f"Secret {ns}/{name}", None, _secret_manifest(ns, name, data)) for (ns, name), data in secrets.items()
    ]
    loaded = parse_manifests(documents)
    result = compile_loaded(loaded, 0, settings)
    issues: dict[str, list[PolicyIssue]] = {}
    for issue in result.issues:
        issues.setdefault(issue.source, []).append(issue)
    accepted = frozenset(source.policy.ref for source in result.accepted)
    by_ref = {policy_ref(m): m for m in manifests}
    used_secrets: list[dict] = []
    for ref in sorted(accepted):
        namespace = ref.split("/", 1)[0]
        for name in sorted(secret_names(by_ref[ref])):
            if (namespace, name) in secrets:
                manifest = _secret_manifest(namespace, name, secrets[(namespace, name)])
                if manifest not in used_secrets:
                    used_secrets.append(manifest)
    return Compiled(
        version=result.snapshot.version,
        policies=[by_ref[ref] for ref in sorted(accepted)],
        secrets=used_secrets,
        accepted=accepted,
        issues=issues,
    )


# -- status ---------------------------------------------------------------------
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
