"""Every Secret a policy references, found by walking the model: one list for validation
(does the Secret exist, has it the key), compilation (read the value) and the operator
(which Secrets to read). A new `...SecretRef` field is found without touching any of them.

The walk descends only into the fields whose type can hold a reference (planned once per
model class from its annotations), so a policy costs a few steps, not one per field.
"""

from __future__ import annotations

import functools
import typing
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


def _can_hold_reference(annotation: object, visiting: frozenset[type] = frozenset()) -> bool:
    """Whether a value of this type can be or contain a SecretRef / SecretKeyRef."""
    if isinstance(annotation, type) and issubclass(annotation, SecretKeyRef | SecretRef):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation not in visiting and any(
            _can_hold_reference(info.annotation, visiting | {annotation}) for info in annotation.model_fields.values()
        )
    return any(_can_hold_reference(argument, visiting) for argument in typing.get_args(annotation))


@functools.cache
def _fields(model: type[BaseModel]) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """(attribute, field name in the policy, keys a whole-Secret reference needs) of the
    fields of `model` that can hold a reference."""
    return tuple(
        (name, info.alias or name, next((m.keys for m in info.metadata if isinstance(m, RequiredKeys)), ()))
        for name, info in model.model_fields.items()
        if _can_hold_reference(info.annotation)
    )


_LEAVES = (str, int, float, bool, type(None))


def _walk(value: object, path: str, required: tuple[str, ...]) -> Iterator[SecretReference]:
    if isinstance(value, _LEAVES):
        return
    if isinstance(value, SecretKeyRef):
        yield SecretReference(path, value.name, (value.key,), whole_secret=False)
    elif isinstance(value, SecretRef):
        yield SecretReference(path, value.name, required, whole_secret=True)
    elif isinstance(value, BaseModel):
        for name, alias, keys in _fields(type(value)):
            yield from _walk(getattr(value, name), f"{path}.{alias}", keys)
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
