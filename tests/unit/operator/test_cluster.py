"""Which policies the cluster's snapshot enforces, and with which Secrets."""

from __future__ import annotations

from tests.unit.operator.policies import conditions, policy

from authgate.policy import ValidationSettings
from authgate_operator.cluster import clean_manifest, compile_cluster, current_policies, secret_names
from authgate_operator.status import SyncState, desired_status

SETTINGS = ValidationSettings()


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


def test_a_policy_recreated_under_the_same_name_counts_once():
    old, new = policy("x"), policy("x")
    old["metadata"].update(uid="old", resourceVersion="7")
    new["metadata"].update(uid="new", resourceVersion="9")
    assert [p["metadata"]["uid"] for p in current_policies([new, old, policy("a")])] == ["uid-apps-a", "new"]


def test_the_secrets_of_an_unparsable_spec_are_not_read():
    assert secret_names(policy("x", bogus=1)) == set()
