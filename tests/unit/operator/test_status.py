"""What a policy's status says, and when it is written."""

from __future__ import annotations

from tests.unit.operator.policies import conditions, policy

from authgate.policy import ValidationSettings
from authgate_operator.cluster import compile_cluster
from authgate_operator.status import SyncState, desired_status, status_patch

SETTINGS = ValidationSettings()


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
