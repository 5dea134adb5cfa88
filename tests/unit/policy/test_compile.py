"""Compilation into a Snapshot: defaults, the routing table, snapshot documents."""

import pytest
import yaml
from tests.unit.policy.documents import BASE, EXAMPLES, STRICT, write

from authgate.errors import PolicyError
from authgate.policy import compile_document, compile_files
from authgate.policy.compile import resource_metadata_url


def test_every_example_policy_compiles():
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert files
    for path in files:
        snapshot = compile_files([path], STRICT)
        assert snapshot.policies, path


def test_defaults_come_from_the_resource(tmp_path):
    snapshot = compile_files([write(tmp_path, BASE)], STRICT)
    policy = snapshot.policies[0]
    assert policy.hosts == ("mcp.example.com",)
    assert policy.path_prefixes == ("/mcp",)
    issuer = policy.issuers[0]
    assert issuer.audiences == frozenset({"https://mcp.example.com/mcp"})
    assert "RS256" in issuer.algorithms and "EdDSA" in issuer.algorithms
    assert not any(alg.startswith("HS") or alg == "none" for alg in issuer.algorithms)
    assert issuer.clock_skew_seconds == 60
    assert policy.resource_metadata_url == "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"


def test_resource_metadata_url_inserts_the_well_known_segment():
    assert (
        resource_metadata_url("https://a.example.com") == "https://a.example.com/.well-known/oauth-protected-resource"
    )
    assert resource_metadata_url("https://A.example.com:8443/x/y") == (
        "https://a.example.com:8443/.well-known/oauth-protected-resource/x/y"
    )


def test_same_namespace_policies_split_a_host_by_prefix(tmp_path):
    second = BASE.replace("name: api", "name: admin").replace(
        "https://mcp.example.com/mcp", "https://mcp.example.com/mcp/admin"
    )
    snapshot = compile_files([write(tmp_path, BASE + "---\n" + second)], STRICT)
    assert snapshot.route("mcp.example.com", "/mcp/admin/x").name == "admin"
    assert snapshot.route("mcp.example.com", "/mcp/adminx").name == "api"
    assert snapshot.route("mcp.example.com", "/mcp").name == "api"
    assert snapshot.route("mcp.example.com", "/other") is None
    assert snapshot.route("other.example.com", "/mcp") is None


def test_a_policy_reference_finds_only_policies_that_cover_the_host(tmp_path):
    second = BASE.replace("name: api", "name: admin").replace(
        "https://mcp.example.com/mcp", "https://mcp.example.com/mcp/admin"
    )
    elsewhere = BASE.replace("name: api", "name: site").replace(
        "https://mcp.example.com/mcp", "https://www.example.com/"
    )
    snapshot = compile_files([write(tmp_path, "---\n".join([BASE, second, elsewhere]))], STRICT)
    assert snapshot.named_on_host("mcp.example.com", "apps/admin").name == "admin"
    assert snapshot.named_on_host("mcp.example.com", "apps/api").name == "api"
    assert snapshot.named_on_host("mcp.example.com", "apps/site") is None  # exists, on another host
    assert snapshot.named_on_host("www.example.com", "apps/site").name == "site"
    assert snapshot.named_on_host("unknown.example.com", "apps/api") is None


def test_snapshot_documents_compile_the_same_way(tmp_path):
    manifest = yaml.safe_load(BASE)
    snapshot = compile_document({"formatVersion": 1, "generation": 7, "policies": [manifest], "secrets": []}, STRICT)
    assert snapshot.generation == 7
    assert snapshot.version == compile_files([write(tmp_path, BASE)], STRICT).version
    for bad in [
        [],
        {"formatVersion": 2, "generation": 1},
        {"formatVersion": 1, "generation": -1},
        {"formatVersion": 1, "generation": 1, "policies": [{"kind": "OAuthPolicy"}]},
        {"formatVersion": 1, "generation": 1, "extra": 1},
    ]:
        with pytest.raises(PolicyError):
            compile_document(bad, STRICT)
