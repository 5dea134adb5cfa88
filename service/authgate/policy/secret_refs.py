"""Every Secret a policy references, found by walking the model: one list for validation
(does the Secret exist, has it the key), compilation (read the value) and the operator
(which Secrets to read). A new `...SecretRef` field is found without touching any of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import BaseModel

from authgate.policy.loader import Secrets
from authgate.policy.model import PolicySpec, RequiredKeys, SecretKeyRef, SecretRef


@dataclass(frozen=True)
class SecretReference:
    """One reference in a policy: where it is (`spec.tokenExchange.clientSecretRef`), the
    Secret's name (always in the policy's namespace) and the keys it must hold."""

    field: str
    name: str
    keys: tuple[str, ...]
    whole_secret: bool  # a SecretRef (several keys), not a SecretKeyRef (one key)


def _walk(value: object, path: str, required: tuple[str, ...]) -> Iterator[SecretReference]:
    if isinstance(value, SecretKeyRef):
        yield SecretReference(path, value.name, (value.key,), whole_secret=False)
    elif isinstance(value, SecretRef):
        yield SecretReference(path, value.name, required, whole_secret=True)
    elif isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            keys = next((m.keys for m in info.metadata if isinstance(m, RequiredKeys)), ())
            yield from _walk(getattr(value, name), f"{path}.{info.alias or name}", keys)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]", required)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}", required)


def secret_refs(spec: PolicySpec) -> list[SecretReference]:
    """Every Secret reference of a policy, in the order of the spec's fields."""
    return list(_walk(spec, "spec", ()))


def secret_names(spec: PolicySpec) -> set[str]:
    """The names of the Secrets a policy needs (all in its own namespace)."""
    return {ref.name for ref in secret_refs(spec)}


def reference_problems(ref: SecretReference, namespace: str, secrets: Secrets) -> list[str]:
    """Why a reference does not resolve (the Secret or one of its keys is missing), or []."""
    if not secrets.has(namespace, ref.name):
        return [f"Secret {namespace}/{ref.name} not found"]
    where = "Secret" if ref.whole_secret else f"Secret {namespace}/{ref.name}"
    return [f"{where} has no key {key!r}" for key in ref.keys if secrets.get(namespace, ref.name, key) is None]


def secret_value(secrets: Secrets, namespace: str, ref: SecretKeyRef) -> str:
    """The value of a validated key reference, as text."""
    return (secrets.get(namespace, ref.name, ref.key) or b"").decode()
