"""Cluster objects → what the replicas enforce: the policies' Secrets, one compiled
snapshot. Pure functions, the same validation as `authgate validate`."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from authgate.errors import PolicyIssue
from authgate.policy import FORMAT_VERSION, ValidationSettings, compile_loaded, parse_manifests
from authgate.policy import secret_names as policy_secret_names
from authgate.policy.model import PolicySpec

SecretData = Mapping[str, bytes]


def policy_ref(obj: Mapping) -> str:
    metadata = obj.get("metadata", {})
    return f"{metadata.get('namespace', 'default')}/{metadata.get('name')}"


def secret_names(obj: Mapping) -> set[str]:
    """Names of the Secrets a policy references (all in its own namespace); none when its
    spec does not parse (it is rejected before any Secret matters)."""
    try:
        spec = PolicySpec.model_validate(obj.get("spec"))
    except ValidationError:
        return set()
    return policy_secret_names(spec)


def clean_manifest(obj: Mapping) -> dict:
    """What of an API object the snapshot carries: identity, age and spec; never status."""
    metadata = obj.get("metadata", {})
    kept = {
        key: metadata[key] for key in ("name", "namespace", "uid", "generation", "creationTimestamp") if key in metadata
    }
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": kept, "spec": obj.get("spec")}


def _secret_manifest(namespace: str, name: str, data: SecretData) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": namespace, "name": name},
        "data": {key: base64.b64encode(value).decode() for key, value in sorted(data.items())},
    }


@dataclass(frozen=True)
class Compiled:
    version: str  # digest of what is enforced; a new version needs a new generation
    policies: list[dict]  # clean manifests of the accepted policies
    secrets: list[dict]  # Secret manifests referenced by accepted policies
    accepted: frozenset[str]
    issues: dict[str, list[PolicyIssue]] = field(default_factory=dict)

    def document(self, generation: int) -> dict:
        return {
            "formatVersion": FORMAT_VERSION,
            "generation": generation,
            "policies": self.policies,
            "secrets": self.secrets,
        }


def compile_cluster(
    objects: Iterable[Mapping],
    secrets: Mapping[tuple[str, str], SecretData],
    settings: ValidationSettings,
) -> Compiled:
    """Validate every policy with the same code as `authgate validate`; leave out the invalid
    ones and the losers of host conflicts; the others are unaffected by their neighbours."""
    manifests = [clean_manifest(obj) for obj in objects]
    documents = [(policy_ref(m), None, m) for m in manifests]
    documents += [
        (f"Secret {ns}/{name}", None, _secret_manifest(ns, name, data)) for (ns, name), data in secrets.items()
    ]
    loaded = parse_manifests(documents)
    result = compile_loaded(loaded, 0, settings)
    issues: dict[str, list[PolicyIssue]] = {}
    for issue in result.issues:
        issues.setdefault(issue.source, []).append(issue)
    accepted = frozenset(source.policy.ref for source in result.accepted)
    by_ref = {policy_ref(m): m for m in manifests}
    used_secrets: list[dict] = []
    for ref in sorted(accepted):
        namespace = ref.split("/", 1)[0]
        for name in sorted(secret_names(by_ref[ref])):
            if (namespace, name) in secrets:
                manifest = _secret_manifest(namespace, name, secrets[(namespace, name)])
                if manifest not in used_secrets:
                    used_secrets.append(manifest)
    return Compiled(
        version=result.snapshot.version,
        policies=[by_ref[ref] for ref in sorted(accepted)],
        secrets=used_secrets,
        accepted=accepted,
        issues=issues,
    )


def _resource_version(obj: Mapping) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", "0"))
    except ValueError:
        return 0


def current_policies(bodies: Iterable[Mapping]) -> list[dict]:
    """One object per namespace/name, sorted: a policy deleted and created again may briefly
    be in the index twice (old and new uid); the newer copy is the one that counts."""
    newest: dict[str, Mapping] = {}
    for body in bodies:
        ref = policy_ref(body)
        if ref not in newest or _resource_version(body) >= _resource_version(newest[ref]):
            newest[ref] = body
    return [dict(newest[ref]) for ref in sorted(newest)]


def policies_key(objects: Iterable[Mapping]) -> bytes:
    """What compilation reads of the policies (identity, age, spec; never status)."""
    digest = hashlib.sha256()
    for obj in objects:
        digest.update(json.dumps(clean_manifest(obj), sort_keys=True).encode())
    return digest.digest()


def inputs_key(policies: bytes, secrets: Mapping[tuple[str, str], Mapping[str, bytes]]) -> bytes:
    """What compilation depends on: the policies and the values of their Secrets."""
    digest = hashlib.sha256(policies)
    for key in sorted(secrets):
        digest.update(repr((key, sorted(secrets[key].items()))).encode())
    return digest.digest()
