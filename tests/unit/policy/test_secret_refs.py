"""One walk finds every Secret a policy references, for validation, compilation and the operator."""

from typing import get_args

from pydantic import BaseModel

from authgate.policy import Secrets, secret_names, secret_refs
from authgate.policy.loader import PolicySource
from authgate.policy.model import OAuthPolicy, PolicySpec, SecretKeyRef, SecretRef
from authgate.policy.validate import validate_policy


def secret_ref_fields(model: type[BaseModel], path: str = "spec") -> set[str]:
    """Every field of the model (at any depth) that holds a Secret reference: the field paths
    with list indexes as [0]."""
    found: set[str] = set()
    for name, info in model.model_fields.items():
        where = f"{path}.{info.alias or name}"
        annotation = info.annotation
        for candidate in (
            annotation,
            *get_args(annotation),
            *(a for arg in get_args(annotation) for a in get_args(arg)),
        ):
            if candidate in (SecretKeyRef, SecretRef):
                found.add(where)
            elif isinstance(candidate, type) and issubclass(candidate, BaseModel):
                listed = any(getattr(arg, "__origin__", None) is list for arg in (annotation, *get_args(annotation)))
                found |= secret_ref_fields(candidate, f"{where}[0]" if listed else where)
    return found


FULL_SPEC = {
    "resource": "https://mcp.example.com/mcp",
    "issuers": [
        {
            "issuer": "https://idp.example.com",
            "introspection": {
                "endpoint": "https://idp.example.com/introspect",
                "clientId": "c",
                "clientSecretRef": {"name": "introspect", "key": "secret"},
            },
        }
    ],
    "facade": {
        "upstream": {
            "issuer": "https://idp.example.com",
            "clientId": "c",
            "clientSecretRef": {"name": "upstream", "key": "secret"},
        }
    },
    "tokenExchange": {
        "tokenEndpoint": "https://idp.example.com/token",
        "clientId": "c",
        "clientSecretRef": {"name": "exchange", "key": "secret"},
        "clientCertificateSecretRef": {"name": "mtls"},
    },
}


def test_every_secret_reference_field_of_the_model_is_found():
    refs = secret_refs(PolicySpec.model_validate(FULL_SPEC))
    fields = {ref.field for ref in refs}
    assert fields == secret_ref_fields(PolicySpec)  # a new ...SecretRef field must be in FULL_SPEC too
    assert fields == {
        "spec.issuers[0].introspection.clientSecretRef",
        "spec.facade.upstream.clientSecretRef",
        "spec.tokenExchange.clientSecretRef",
        "spec.tokenExchange.clientCertificateSecretRef",
    }
    assert all(field.rsplit(".", 1)[-1].endswith("SecretRef") for field in fields)


def test_references_carry_the_keys_they_need():
    refs = {ref.field: ref for ref in secret_refs(PolicySpec.model_validate(FULL_SPEC))}
    assert refs["spec.tokenExchange.clientSecretRef"].keys == ("secret",)
    assert refs["spec.tokenExchange.clientCertificateSecretRef"].keys == ("tls.crt", "tls.key")
    assert secret_names(PolicySpec.model_validate(FULL_SPEC)) == {"introspect", "upstream", "exchange", "mtls"}


def test_every_reference_is_checked_by_validation():
    policy = OAuthPolicy.model_validate(
        {
            "apiVersion": "authgate.dev/v1alpha1",
            "kind": "OAuthPolicy",
            "metadata": {"name": "p", "namespace": "apps"},
            "spec": FULL_SPEC,
        }
    )
    issues = validate_policy(PolicySource(policy, "p.yaml"), Secrets({("apps", "mtls"): {"tls.crt": b"x"}}))
    missing = [(i.field, i.message) for i in issues if i.reason == "SecretNotFound"]
    assert missing == [
        ("spec.issuers[0].introspection.clientSecretRef", "Secret apps/introspect not found"),
        ("spec.facade.upstream.clientSecretRef", "Secret apps/upstream not found"),
        ("spec.tokenExchange.clientSecretRef", "Secret apps/exchange not found"),
        ("spec.tokenExchange.clientCertificateSecretRef", "Secret has no key 'tls.key'"),
    ]
