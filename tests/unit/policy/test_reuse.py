"""A compile reuses the last compile's work for a policy only when nothing it reads changed."""

import base64
import copy

import pytest
import yaml

from authgate.errors import PolicyError
from authgate.policy import ValidationSettings, compile_document, reuse
from authgate.policy import compile as compiling
from authgate.policy.snapshot import CompiledPolicy

STRICT = ValidationSettings()

EXCHANGING = yaml.safe_load("""\
apiVersion: authgate.dev/v1alpha1
kind: OAuthPolicy
metadata: {name: api, namespace: apps, uid: u-1}
spec:
  resource: https://mcp.example.com/mcp
  issuers:
    - issuer: https://idp.example.com
  tokenExchange:
    tokenEndpoint: https://sts.example.com/token
    clientId: gateway
    clientSecretRef: {name: sts, key: secret}
""")


def _secret(value: bytes, namespace: str = "apps", name: str = "sts") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": namespace, "name": name},
        "data": {"secret": base64.b64encode(value).decode()},
    }


def _document(policies: list[dict], secrets: list[dict], generation: int = 1) -> dict:
    return {"formatVersion": 1, "generation": generation, "policies": policies, "secrets": secrets}


def _others(count: int) -> list[dict]:
    others = []
    for index in range(count):
        policy = copy.deepcopy(EXCHANGING)
        policy["metadata"] = {"name": f"p{index}", "namespace": "other", "uid": f"u-other-{index}"}
        policy["spec"] = {
            "resource": f"https://p{index}.example.com/",
            "issuers": [{"issuer": "https://idp.example.com"}],
        }
        others.append(policy)
    return others


@pytest.fixture(autouse=True)
def fresh_memo():
    reuse.MEMO.clear()
    yield
    reuse.MEMO.clear()


def _cold(document: dict, settings: ValidationSettings = STRICT):
    reuse.MEMO.clear()
    return compile_document(document, settings)


def _fields(policy: CompiledPolicy) -> dict:
    return {name: getattr(policy, name) for name in policy.__dataclass_fields__ if name != "spec"}


def test_a_second_compile_reuses_the_unchanged_policies_and_builds_the_same_snapshot():
    document = _document([EXCHANGING, *_others(3)], [_secret(b"s3cret")])
    first = compile_document(document, STRICT)
    changed = copy.deepcopy(document)
    changed["policies"][1]["spec"]["resource"] = "https://p0.example.com/v2"
    second = compile_document(changed, STRICT)
    # The three untouched policies are the same objects; the changed one is new.
    assert second.policies[0] is first.policies[0]
    assert second.policies[2:] == first.policies[2:] and all(
        a is b for a, b in zip(second.policies[2:], first.policies[2:], strict=True)
    )
    assert second.policies[1] is not first.policies[1] and second.policies[1].resource.endswith("/v2")
    # And the snapshot is what a compile from nothing makes, content version included.
    cold = _cold(changed)
    assert second.version == cold.version != first.version
    assert [_fields(p) for p in second.policies] == [_fields(p) for p in cold.policies]
    assert second.routes.keys() == cold.routes.keys()


def test_a_changed_secret_in_the_namespace_compiles_its_policies_again():
    first = compile_document(_document([EXCHANGING, *_others(1)], [_secret(b"old")]), STRICT)
    second = compile_document(_document([EXCHANGING, *_others(1)], [_secret(b"new")], 2), STRICT)
    assert first.policies[0].token_exchange.client_secret == "old"
    assert second.policies[0].token_exchange.client_secret == "new"
    assert second.policies[1] is first.policies[1]  # another namespace: its Secrets did not change
    assert second.version != first.version


def test_a_secret_that_disappears_is_reported_even_for_a_policy_compiled_before():
    compile_document(_document([EXCHANGING], [_secret(b"s3cret")]), STRICT)
    with pytest.raises(PolicyError) as raised:
        compile_document(_document([EXCHANGING], [], 2), STRICT)
    assert "Secret apps/sts not found" in str(raised.value)


def test_other_validation_settings_validate_again():
    plain = copy.deepcopy(EXCHANGING)
    plain["spec"]["issuers"] = [{"issuer": "http://idp.example.com"}]
    document = _document([plain], [_secret(b"s3cret")])
    assert compile_document(document, ValidationSettings(insecure_http=True)).policies
    with pytest.raises(PolicyError) as raised:
        compile_document(document, STRICT)
    assert "must use https" in str(raised.value)


def test_a_policy_with_issues_is_reported_on_every_compile_with_its_own_position():
    bad = copy.deepcopy(EXCHANGING)
    bad["spec"]["rules"] = [{"pathPrefix": "no-slash"}]
    for policies in ([bad], [*_others(2), bad]):
        with pytest.raises(PolicyError) as raised:
            compile_document(_document(policies, [_secret(b"s3cret")]), STRICT)
        assert f"policies[{len(policies) - 1}]" in str(raised.value)


def test_cross_policy_checks_run_on_every_compile():
    compile_document(_document([EXCHANGING], [_secret(b"s3cret")]), STRICT)
    twin = copy.deepcopy(EXCHANGING)
    twin["metadata"]["uid"] = "u-2"
    with pytest.raises(PolicyError) as raised:
        compile_document(_document([EXCHANGING, twin], [_secret(b"s3cret")], 2), STRICT)
    assert "duplicate policy apps/api" in str(raised.value)


def test_the_memo_keeps_only_the_last_compile():
    compile_document(_document(_others(5), []), STRICT)
    compile_document(_document(_others(2), [], 2), STRICT)
    assert len(reuse.MEMO) == 2


def test_the_content_version_is_the_digest_of_one_canonical_document():
    # The version the operator compares replicas by: written from per-policy parts, it must
    # equal the digest of the whole content as one canonical JSON object.
    document = _document([EXCHANGING, *_others(2)], [_secret(b"s3cret"), _secret(b"x", "elsewhere")])
    snapshot = compile_document(document, STRICT)
    loaded = compiling.parse_manifests([("p", None, p) for p in document["policies"]])
    secrets = compiling.parse_manifests([("s", None, s) for s in document["secrets"]]).secrets
    content = {
        "policies": [
            [
                s.policy.metadata.namespace,
                s.policy.metadata.name,
                s.policy.metadata.uid,
                s.policy.spec.model_dump(mode="json", by_alias=True),
            ]
            for s in loaded.policies
        ],
        "secrets": sorted(
            [ns, name, key, compiling.hashlib.sha256(value).hexdigest()]
            for (ns, name), data in secrets.data.items()
            if ns in {"apps", "other"}
            for key, value in data.items()
        ),
    }
    assert snapshot.version == compiling._digest(content).hex()[:16]
