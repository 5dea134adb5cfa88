"""Which policies the cluster's snapshot enforces, and with which Secrets."""

from __future__ import annotations

import json

from tests.unit.operator.policies import conditions, policy

from authgate.policy import ValidationSettings
from authgate_operator.cluster import (
    PolicyParser,
    clean_manifest,
    compile_cluster,
    current_policies,
    policies_key,
    secret_names,
)
from authgate_operator.status import SyncState, desired_status

SETTINGS = ValidationSettings()


def test_valid_policies_are_unaffected_by_an_invalid_neighbour():
    good, bad = policy("good"), policy("bad", bogus=1)
    compiled = compile_cluster([good, bad], {}, SETTINGS)
    assert compiled.accepted == {"apps/good"}
    assert [p.manifest["metadata"]["name"] for p in compiled.policies] == ["good"]
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


def test_each_spec_version_is_parsed_once():
    parser = PolicyParser()
    a, b = policy("a"), policy("b")
    first = parser.parse([a, b])
    b["status"] = {"conditions": [{"type": "Ready"}]}  # a status write keeps the generation
    b["metadata"]["resourceVersion"] = "8"
    again = parser.parse([a, b])
    assert again[0] is first[0] and again[1] is first[1]
    assert policies_key(again) == policies_key(first)
    b["spec"]["resource"] = "https://b2.example.com/mcp"
    b["metadata"]["generation"] = 2  # what the API server does on a spec change
    changed = parser.parse([a, b])
    assert changed[0] is first[0] and changed[1] is not first[1]
    assert changed[1].manifest["spec"]["resource"] == "https://b2.example.com/mcp"
    assert policies_key(changed) != policies_key(first)


def test_objects_without_a_generation_are_parsed_every_time():
    parser = PolicyParser()
    obj = policy("a")
    del obj["metadata"]["generation"]
    first = parser.parse([obj])
    obj["spec"]["resource"] = "https://other.example.com/mcp"
    second = parser.parse([obj])
    assert second[0].manifest["spec"]["resource"] == "https://other.example.com/mcp"
    assert policies_key(second) != policies_key(first)


def test_parsed_and_raw_objects_compile_alike():
    exchange = {
        "tokenEndpoint": "https://idp.example.com/token",
        "clientId": "c",
        "clientSecretRef": {"name": "exchange", "key": "secret"},
    }
    objects = [
        policy("young", "team-b", "https://shared.example.com/y", created="2026-02-01T00:00:00Z"),
        policy("bad", bogus=1),
        policy("old", "team-a", "https://shared.example.com/o"),
        policy("x", tokenExchange=exchange),
        policy("same-age-first", "team-c", "https://tie.example.com/a"),  # the input's order breaks the tie
        policy("same-age-second", "team-d", "https://tie.example.com/b"),
    ]
    secrets = {("apps", "exchange"): {"secret": b"s"}}
    raw = compile_cluster(objects, secrets, SETTINGS)
    parser = PolicyParser()
    parser.parse(reversed(objects))  # remembered at other places in the input
    parsed = compile_cluster(parser.parse(objects), secrets, SETTINGS)
    assert parsed == raw
    assert parsed.accepted == {"team-a/old", "apps/x", "team-c/same-age-first"}


def test_the_snapshot_document_is_the_canonical_json_of_the_accepted_policies_and_their_secrets():
    exchange = {
        "tokenEndpoint": "https://idp.example.com/token",
        "clientId": "c",
        "clientSecretRef": {"name": "exchange", "key": "secret"},
    }
    objects = [policy("x", tokenExchange=exchange), policy("b", bogus=1), policy("a")]
    objects[2]["spec"]["issuers"][0]["audiences"] = ["https://ünïcode.example/mcp"]  # escaped as json.dumps does
    compiled = compile_cluster(objects, {("apps", "exchange"): {"secret": b"s"}}, SETTINGS)
    assert compiled.accepted == {"apps/a", "apps/x"}
    expected = {
        "formatVersion": 1,
        "generation": 7,
        "policies": [clean_manifest(objects[2]), clean_manifest(objects[0])],  # accepted, by ref
        "secrets": compiled.secrets,
    }
    assert compiled.document(7) == json.dumps(expected, sort_keys=True, separators=(",", ":")).encode()
