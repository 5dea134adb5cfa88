"""The operator's pure rules: which policies are enforced, and what their status says."""

from __future__ import annotations

from authgate.policy import ValidationSettings
from authgate_operator.reconcile import (
    SyncState,
    clean_manifest,
    compile_cluster,
    desired_status,
    secret_names,
    status_patch,
)

SETTINGS = ValidationSettings()


def policy(
    name: str,
    namespace: str = "apps",
    resource: str | None = None,
    created: str = "2026-01-01T00:00:00Z",
    generation: int = 1,
    **spec,
) -> dict:
    return {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "generation": generation,
            "creationTimestamp": created,
            "resourceVersion": "7",
            "managedFields": [{"x": 1}],
        },
        "spec": {
            "resource": resource or f"https://{name}.example.com/mcp",
            "issuers": [{"issuer": "https://idp.example.com"}],
            **spec,
        },
        "status": {"conditions": []},
    }


def conditions(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_valid_policies_are_unaffected_by_an_invalid_neighbour():
    good, bad = policy("good"), policy("bad", bogus=1)
    compiled = compile_cluster([good, bad], {}, SETTINGS)
    assert compiled.accepted == {"apps/good"}
    assert [p["metadata"]["name"] for p in compiled.policies] == ["good"]
    assert compiled.issues["apps/bad"][0].field == "spec.bogus"


def test_snapshot_carries_no_status_and_no_managed_fields():
    manifest = clean_manifest(policy("good"))
    assert "status" not in manifest and "managedFields" not in manifest["metadata"]
    assert manifest["metadata"]["uid"] == "uid-apps-good"


def test_the_oldest_namespace_wins_a_host_and_the_loser_gets_conflict():
    older = policy("a", namespace="team-a", resource="https://shared.example.com/a", created="2026-01-01T00:00:00Z")
    younger = policy("b", namespace="team-b", resource="https://shared.example.com/b", created="2026-02-01T00:00:00Z")
    compiled = compile_cluster([younger, older], {}, SETTINGS)
    assert compiled.accepted == {"team-a/a"}
    status = desired_status(younger, compiled, SyncState(generation=3, replicas=2, synced=2))
    assert conditions(status)["Accepted"] == ("False", "Conflict")
    assert conditions(status)["Ready"] == ("False", "Conflict")
    assert "belongs to namespace team-a" in status["conditions"][1]["message"]


def test_secret_references_resolve_in_the_policy_namespace_only():
    exchange = {
        "tokenEndpoint": "https://idp.example.com/token",
        "clientId": "c",
        "clientSecretRef": {"name": "exchange", "key": "secret"},
    }
    obj = policy("x", tokenExchange=exchange)
    assert secret_names(obj) == {"exchange"}
    elsewhere = compile_cluster([obj], {("other", "exchange"): {"secret": b"s"}}, SETTINGS)
    assert elsewhere.accepted == frozenset()
    assert elsewhere.issues["apps/x"][0].reason == "SecretNotFound"
    here = compile_cluster([obj], {("apps", "exchange"): {"secret": b"s"}, ("apps", "unused"): {"k": b"v"}}, SETTINGS)
    assert here.accepted == {"apps/x"}
    assert [s["metadata"]["name"] for s in here.secrets] == ["exchange"]  # only what is referenced


def test_a_rotated_secret_changes_the_version():
    exchange = {
        "tokenEndpoint": "https://idp.example.com/token",
        "clientId": "c",
        "clientSecretRef": {"name": "exchange", "key": "secret"},
    }
    obj = policy("x", tokenExchange=exchange)
    first = compile_cluster([obj], {("apps", "exchange"): {"secret": b"one"}}, SETTINGS)
    second = compile_cluster([obj], {("apps", "exchange"): {"secret": b"two"}}, SETTINGS)
    assert first.version != second.version


def test_status_of_an_accepted_policy_tracks_the_replicas():
    obj = policy("good", generation=4)
    compiled = compile_cluster([obj], {}, SETTINGS)
    pending = desired_status(obj, compiled, SyncState(generation=9, replicas=3, synced=1, push_error="10.0.0.3: down"))
    assert pending["syncedReplicas"] == "1/3" and pending["observedGeneration"] == 4
    assert conditions(pending) == {
        "Ready": ("False", "SyncPending"),
        "Accepted": ("True", "Valid"),
        "Synced": ("False", "SyncPending"),
    }
    assert "10.0.0.3: down" in pending["conditions"][2]["message"]
    done = desired_status(obj, compiled, SyncState(generation=9, replicas=3, synced=3))
    assert conditions(done)["Ready"] == ("True", "Ready") and done["syncedReplicas"] == "3/3"
    none = desired_status(obj, compiled, SyncState(generation=9, replicas=0, synced=0))
    assert conditions(none)["Synced"] == ("False", "NoReplicas")


def test_status_is_patched_only_when_it_changes_and_keeps_transition_times():
    obj = policy("good")
    compiled = compile_cluster([obj], {}, SETTINGS)
    desired = desired_status(obj, compiled, SyncState(generation=2, replicas=1, synced=1))
    first = status_patch(None, desired, "2026-11-27T00:00:00Z")
    assert first is not None
    current = {k: v for k, v in first.items() if v is not None}
    again = desired_status(obj, compiled, SyncState(generation=2, replicas=1, synced=1))
    assert status_patch(current, again, "2026-11-27T00:05:00Z") is None  # no write per push
    changed = desired_status(obj, compiled, SyncState(generation=3, replicas=2, synced=1))
    patch = status_patch(current, changed, "2026-11-27T00:10:00Z")
    times = {c["type"]: c["lastTransitionTime"] for c in patch["conditions"]}
    assert times["Accepted"] == "2026-11-27T00:00:00Z"  # unchanged condition keeps its time
    assert times["Synced"] == "2026-11-27T00:10:00Z"
