"""The operator's decisions without a cluster: generations, status writes, Events."""

from __future__ import annotations

import json

from tests.unit.operator.policies import policy

from authgate.policy import ValidationSettings
from authgate_operator.cluster import compile_cluster, policy_ref
from authgate_operator.kube import Endpoint
from authgate_operator.plan import Published, Written, go_past, plan_report, plan_snapshot, sync_state
from authgate_operator.replicas import ReplicaReport
from authgate_operator.status import SyncState

SETTINGS = ValidationSettings()
NOW, LATER = "2026-11-27T00:00:00Z", "2026-11-27T00:05:00Z"


def test_new_content_gets_the_next_generation_and_unchanged_content_keeps_it():
    first = compile_cluster([policy("a")], {}, SETTINGS)
    published = plan_snapshot(first, Published(generation=4, version="stored-before-restart"))
    assert published.generation == 5 and json.loads(published.body)["generation"] == 5 and not published.stored
    assert plan_snapshot(first, published) is published
    second = compile_cluster([policy("a"), policy("b")], {}, SETTINGS)
    assert plan_snapshot(second, published).generation == 6


def test_a_restart_with_the_stored_version_republishes_the_same_generation():
    compiled = compile_cluster([policy("a")], {}, SETTINGS)
    published = plan_snapshot(compiled, Published(generation=4, version=compiled.version))
    assert published.generation == 4 and published.body


def test_a_replica_with_a_later_generation_is_gone_past():
    compiled = compile_cluster([policy("a")], {}, SETTINGS)
    published = plan_snapshot(compiled, Published())
    ahead = ReplicaReport(Endpoint("10.0.0.1", 8081, True), generation=7, version="other")
    assert go_past(compiled, published, [ahead]).generation == 8
    behind = ReplicaReport(Endpoint("10.0.0.2", 8081, True), generation=0)
    assert go_past(compiled, published, [behind]) is None


def test_sync_state_counts_replicas_enforcing_the_snapshot_and_names_the_first_error():
    compiled = compile_cluster([policy("a")], {}, SETTINGS)
    published = plan_snapshot(compiled, Published())
    good = ReplicaReport(Endpoint("10.0.0.1", 8081, True), published.generation, published.version)
    down = ReplicaReport(Endpoint("10.0.0.2", 8081, False), error="10.0.0.2: unreachable")
    sync = sync_state(published, 2, [good, down], None)
    assert (sync.synced, sync.replicas, sync.push_error) == (1, 2, "10.0.0.2: unreachable")
    assert sync_state(published, 2, [good, down], "store failed").push_error == "store failed"


def test_status_is_written_once_even_before_the_index_sees_the_write():
    obj = policy("a")
    compiled = compile_cluster([obj], {}, SETTINGS)
    sync = SyncState(generation=1, replicas=1, synced=1)
    first = plan_report([obj], compiled, sync, {}, {}, NOW)
    patch = first.policies[0].patch
    assert patch is not None
    written = {"apps/a": Written("uid-apps-a", 8, {k: v for k, v in patch.items() if v is not None})}
    assert plan_report([obj], compiled, sync, written, first.events_sent, LATER).policies[0].patch is None
    recreated = policy("a")
    recreated["metadata"]["uid"] = "another"  # our write was to the old object
    assert plan_report([recreated], compiled, sync, written, {}, LATER).policies[0].patch is not None


def test_a_rejection_and_a_push_failure_are_each_told_once():
    bad, good = policy("bad", bogus=1), policy("good")
    compiled = compile_cluster([bad, good], {}, SETTINGS)
    sync = SyncState(generation=1, replicas=1, synced=0, push_error="10.0.0.1: unreachable")
    first = plan_report([bad, good], compiled, sync, {}, {}, NOW)
    events = {item.policy["metadata"]["name"]: [(e.reason, e.message) for e in item.events] for item in first.policies}
    assert events["bad"][0][0] == "Invalid" and "spec.bogus" in events["bad"][0][1]
    assert events["good"] == [("PushFailed", "10.0.0.1: unreachable")]
    again = plan_report([bad, good], compiled, sync, {}, first.events_sent, LATER)
    assert all(not item.events for item in again.policies)


def test_a_quiet_policy_is_skipped_until_something_it_reads_changes():
    objects = [policy("a"), policy("b"), policy("bad", bogus=1)]
    compiled = compile_cluster(objects, {}, SETTINGS)
    sync = SyncState(generation=1, replicas=2, synced=2)
    first = plan_report(objects, compiled, sync, {}, {}, NOW)
    written = {
        policy_ref(item.policy): Written(item.policy["metadata"]["uid"], 8, {k: v for k, v in item.patch.items() if v})
        for item in first.policies
    }
    settled = plan_report(objects, compiled, sync, written, first.events_sent, LATER, first.quiet)
    assert all(item.patch is None and not item.events for item in settled.policies)
    assert len(settled.quiet.policies) == 3

    # Nothing changed: nothing is computed again, and the result is what computing gives.
    again = plan_report(objects, compiled, sync, written, settled.events_sent, LATER, settled.quiet)
    assert again.policies == [] and again.quiet.policies == settled.quiet.policies
    afresh = plan_report(objects, compiled, sync, written, settled.events_sent, LATER)
    assert all(item.patch is None and not item.events for item in afresh.policies)

    # What each one reads changing brings it back: its object, our write, the sync state.
    objects[0]["metadata"]["resourceVersion"] = "9"
    touched = plan_report(objects, compiled, sync, written, settled.events_sent, LATER, again.quiet)
    assert [policy_ref(item.policy) for item in touched.policies] == ["apps/a"]
    written["apps/b"] = Written("uid-apps-b", 9, {})
    rewritten = plan_report(objects, compiled, sync, written, settled.events_sent, LATER, touched.quiet)
    assert {policy_ref(item.policy) for item in rewritten.policies} == {"apps/a", "apps/b"}  # a: not written yet
    behind = SyncState(generation=1, replicas=2, synced=1)
    changed = plan_report(objects, compiled, behind, written, settled.events_sent, LATER, rewritten.quiet)
    assert {policy_ref(item.policy) for item in changed.policies if item.patch} == {"apps/a", "apps/b"}  # 1/2
