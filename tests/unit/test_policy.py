"""Loading, validating and compiling OAuthPolicies: precise errors, nothing half-loads."""

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from authgate.errors import PolicyError
from authgate.policy import (
    ValidationSettings,
    compile_document,
    compile_files,
    compile_loaded,
    load_files,
)
from authgate.policy.compile import resource_metadata_url

EXAMPLES = Path(__file__).parents[2] / "examples" / "policies"
STRICT = ValidationSettings()

BASE = """\
apiVersion: authgate.dev/v1alpha1
kind: OAuthPolicy
metadata: {name: api, namespace: apps}
spec:
  resource: https://mcp.example.com/mcp
  issuers:
    - issuer: https://idp.example.com
"""


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def issues_of(tmp_path: Path, text: str, settings: ValidationSettings = STRICT) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as raised:
        compile_files([path], settings)
    return [str(issue) for issue in raised.value.issues]


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


@pytest.mark.parametrize(
    ("addition", "field", "message"),
    [
        ("  bogus: 1\n", "spec.bogus", "unknown field"),
        ("  mode: Audit\n", "spec.mode", "Input should be"),
        ("  rules: [{pathPrefix: /mcp, requireScopes: read}]\n", "spec.rules[0].requireScopes", "valid list"),
        ("  rules: [{pathPrefix: /mcp, anonymous: 'yes'}]\n", "spec.rules[0].anonymous", "valid boolean"),
        ("  rules: [{methods: [GET]}]\n", "spec.rules[0].pathPrefix", "required field is missing"),
    ],
)
def test_schema_errors_name_file_document_and_field(tmp_path, addition, field, message):
    problems = issues_of(tmp_path, BASE + addition)
    assert any(f"policy.yaml (document 1): {field}: " in p and message in p for p in problems), problems


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (BASE.replace("https://idp.example.com", "http://idp.example.com"), "spec.issuers[0].issuer", "https"),
        (BASE + "      jwksUri: http://idp.example.com/keys\n", "spec.issuers[0].jwksUri", "https"),
        (BASE.replace("https://mcp.example.com/mcp", "https://mcp.example.com/mcp#x"), "spec.resource", "fragment"),
        (BASE + "      algorithms: [HS256]\n", "spec.issuers[0].algorithms[0]", "Input should be"),
        (BASE + "      algorithms: [none]\n", "spec.issuers[0].algorithms[0]", "Input should be"),
        (BASE + "  hosts: ['*.example.com']\n", "spec.hosts[0]", "invalid host"),
        (BASE + "  rules: [{pathPrefix: /other}]\n", "spec.rules[0].pathPrefix", "can never match"),
        (BASE + "  rules: [{pathPrefix: /mcp/../x}]\n", "spec.rules[0].pathPrefix", "normalized form"),
        (
            BASE + "  rules: [{pathPrefix: /mcp, anonymous: true, requireScopes: [a]}]\n",
            "spec.rules[0].anonymous",
            "cannot require",
        ),
        (BASE + "  identityHeaders: {subject: Authorization}\n", "spec.identityHeaders.subject", "cannot be used"),
        (BASE + "  identityHeaders: {subject: X-A, roles: x-a}\n", "spec.identityHeaders.roles", "used twice"),
        (BASE + "  scopeRoles: [{scope: a, role: r}, {scope: a, role: s}]\n", "spec.scopeRoles[1].scope", "twice"),
        (
            BASE + "  facade: {upstream: {issuer: https://other.example.com, clientId: c}}\n",
            "spec.facade.upstream.issuer",
            "must be one of spec.issuers",
        ),
        (
            BASE + "  tokenExchange: {tokenEndpoint: https://idp.example.com/token, clientId: c,"
            " clientSecretRef: {name: missing, key: secret}}\n",
            "spec.tokenExchange.clientSecretRef",
            "not found",
        ),
        (
            BASE + "  tokenExchange: {tokenEndpoint: https://idp.example.com/token, clientId: c}\n",
            "spec.tokenExchange",
            "exactly one of clientSecretRef",
        ),
    ],
)
def test_semantic_errors_are_precise(tmp_path, text, field, message):
    problems = issues_of(tmp_path, text)
    assert any(f": {field}: " in p and message in p for p in problems), problems


def test_http_urls_need_insecure_http(tmp_path):
    text = BASE.replace("https://idp.example.com", "http://idp.example.com")
    assert compile_files([write(tmp_path, text)], ValidationSettings(insecure_http=True)).policies


@pytest.mark.parametrize(
    "rules",
    [
        "[{pathPrefix: /mcp}, {pathPrefix: /mcp/tools, requireRoles: [admin]}]",
        "[{pathPrefix: /mcp, methods: [GET, POST]}, {pathPrefix: /mcp, methods: [post]}]",
        "[{pathPrefix: /mcp, mcpMethods: [tools/call]},"
        " {pathPrefix: /mcp/x, mcpMethods: [tools/call], methods: [POST]}]",
        "[{pathPrefix: /mcp, mcpNames: ['admin_*']}, {pathPrefix: /mcp, mcpNames: [admin_reset]}]",
    ],
)
def test_shadowed_rules_are_errors(tmp_path, rules):
    problems = issues_of(tmp_path, BASE + f"  rules: {rules}\n")
    assert any("spec.rules[1]: shadowed by spec.rules[0]" in p for p in problems), problems


@pytest.mark.parametrize(
    "rules",
    [
        "[{pathPrefix: /mcp/tools, requireRoles: [admin]}, {pathPrefix: /mcp}]",
        "[{pathPrefix: /mcp, methods: [GET]}, {pathPrefix: /mcp, methods: [POST]}]",
        "[{pathPrefix: /mcp, mcpMethods: [tools/call]}, {pathPrefix: /mcp}]",
        "[{pathPrefix: /mcp, mcpNames: [admin_reset]}, {pathPrefix: /mcp, mcpNames: ['admin_*']}]",
    ],
)
def test_reachable_rules_are_fine(tmp_path, rules):
    assert compile_files([write(tmp_path, BASE + f"  rules: {rules}\n")], STRICT).policies


def test_two_policies_claiming_one_host_and_prefix_load_nothing(tmp_path):
    second = BASE.replace("name: api", "name: api2")
    problems = issues_of(tmp_path, BASE + "---\n" + second)
    assert any(
        "(document 2): spec.hosts: host mcp.example.com and prefix /mcp are already claimed by apps/api" in p
        for p in problems
    ), problems


def test_a_host_belongs_to_one_namespace(tmp_path):
    other = BASE.replace("namespace: apps", "namespace: other").replace(
        "https://mcp.example.com/mcp", "https://mcp.example.com/other"
    )
    loaded = load_files([write(tmp_path, BASE + "---\n" + other)])
    result = compile_loaded(loaded, 1, STRICT)
    assert [s.policy.ref for s in result.accepted] == ["apps/api"]
    assert result.issues[0].reason == "Conflict"
    assert "belongs to namespace apps" in result.issues[0].message


def test_the_oldest_policy_wins_a_host(tmp_path):
    younger = BASE.replace(
        "{name: api, namespace: apps}", "{name: api, namespace: apps, creationTimestamp: '2026-02-01T00:00:00Z'}"
    )
    older = BASE.replace(
        "{name: api, namespace: apps}", "{name: b, namespace: other, creationTimestamp: '2026-01-01T00:00:00Z'}"
    )
    result = compile_loaded(load_files([write(tmp_path, younger + "---\n" + older)]), 1, STRICT)
    assert [s.policy.ref for s in result.accepted] == ["other/b"]


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


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    problems = issues_of(tmp_path, BASE + "  rules: [\n")
    assert any("policy.yaml (document 1)" in p and "line" in p for p in problems), problems


def test_wrong_kind_is_named(tmp_path):
    problems = issues_of(tmp_path, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert any("kind: expected OAuthPolicy" in p for p in problems)


def test_secrets_resolve_in_the_policy_namespace_only(tmp_path):
    exchange = (
        "  tokenExchange: {tokenEndpoint: https://idp.example.com/token, clientId: c,"
        " clientSecretRef: {name: exchange, key: secret}}\n"
    )
    secret = (
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: exchange, namespace: NS}\nstringData: {secret: s3cr3t}\n"
    )
    assert compile_files([write(tmp_path, BASE + exchange + secret.replace("NS", "apps"))], STRICT).policies
    problems = issues_of(tmp_path, BASE + exchange + secret.replace("NS", "other"))
    assert any("Secret apps/exchange not found" in p for p in problems)


def test_a_bad_document_in_a_stream_loads_nothing(tmp_path):
    good = BASE
    bad = BASE.replace("name: api", "name: bad").replace("mcp.example.com", "other.example.com") + "  bogus: 1\n"
    with pytest.raises(PolicyError):
        compile_files([write(tmp_path, good + "---\n" + bad)], STRICT)


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


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "resource",
                "hosts",
                "pathPrefixes",
                "issuers",
                "rules",
                "scopeRoles",
                "claimRoles",
                "mode",
                "cors",
                "identityHeaders",
                "facade",
            ]
        ),
        json_values,
    )
)
def test_garbage_specs_are_refused_cleanly(spec):
    document = {
        "formatVersion": 1,
        "generation": 1,
        "policies": [
            {"apiVersion": "authgate.dev/v1alpha1", "kind": "OAuthPolicy", "metadata": {"name": "x"}, "spec": spec}
        ],
    }
    with pytest.raises(PolicyError) as raised:
        compile_document(document, STRICT)
    assert raised.value.issues
