"""Loading: YAML streams and manifests into typed policies, with file, document and field in every issue."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.policy.documents import BASE, STRICT, issues_of, write

from authgate.errors import PolicyError
from authgate.policy import compile_document, compile_files


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


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    problems = issues_of(tmp_path, BASE + "  rules: [\n")
    assert any("policy.yaml (document 1)" in p and "line" in p for p in problems), problems


def test_wrong_kind_is_named(tmp_path):
    problems = issues_of(tmp_path, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert any("kind: expected OAuthPolicy" in p for p in problems)


def test_a_bad_document_in_a_stream_loads_nothing(tmp_path):
    good = BASE
    bad = BASE.replace("name: api", "name: bad").replace("mcp.example.com", "other.example.com") + "  bogus: 1\n"
    with pytest.raises(PolicyError):
        compile_files([write(tmp_path, good + "---\n" + bad)], STRICT)


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
