"""Cluster objects → what the replicas enforce: the policies' Secrets, one compiled
snapshot. Pure functions, the same validation as `authgate validate`."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from authgate.errors import PolicyIssue
from authgate.policy import FORMAT_VERSION, ValidationSettings, compile_loaded, parse_manifests
from authgate.policy import secret_names as policy_secret_names
from authgate.policy.loader import Loaded, PolicySource
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
class ParsedPolicy:
    """One policy object as compilation reads it: parsed and typed once per spec version."""

    ref: str
    encoded: bytes  # clean_manifest(obj) as canonical JSON, as snapshot documents carry it
    digest: bytes  # of `encoded` (policies_key is made of these)
    source: PolicySource | None  # None: it does not parse (then `issues` says why)
    issues: tuple[PolicyIssue, ...]
    secret_names: frozenset[str]

    @property
    def manifest(self) -> dict:
        return json.loads(self.encoded)


def parse_policy(obj: Mapping) -> ParsedPolicy:
    ref, manifest = policy_ref(obj), clean_manifest(obj)
    loaded = parse_manifests([(ref, None, manifest)])  # the same parse as `authgate validate`
    source = loaded.policies[0] if loaded.policies else None
    names = frozenset(policy_secret_names(source.policy.spec)) if source else frozenset()
    encoded = _canonical(manifest)
    return ParsedPolicy(ref, encoded, hashlib.sha256(encoded).digest(), source, tuple(loaded.issues), names)


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class PolicyParser:
    """Parses each policy object once per spec version, not once per round.

    With 10,000 policies, parsing all of them (pydantic, canonical JSON, Secret names) was
    most of a round, and a round runs on every change. An object is known by its uid and
    `metadata.generation`, which the API server raises on every change of anything but
    metadata and status; name, namespace and creationTimestamp cannot change under one uid,
    so the pair fixes all that `clean_manifest` keeps. Objects without both (not from an
    API server) are parsed every time. Only the last round's objects are remembered.
    """

    def __init__(self) -> None:
        self._last: dict[tuple, ParsedPolicy] = {}

    def parse(self, objects: Iterable[Mapping]) -> list[ParsedPolicy]:
        this: dict[tuple, ParsedPolicy] = {}
        parsed = []
        for obj in objects:
            identity = _identity(obj)
            known = self._last.get(identity) if identity is not None else None
            if known is None:
                known = parse_policy(obj)
            if identity is not None:
                this[identity] = known
            parsed.append(known)
        self._last = this
        return parsed


def _identity(obj: Mapping) -> tuple | None:
    metadata = obj.get("metadata", {})
    uid, generation = metadata.get("uid"), metadata.get("generation")
    if not isinstance(uid, str) or not uid or not isinstance(generation, int) or isinstance(generation, bool):
        return None
    return policy_ref(obj), uid, generation


@dataclass(frozen=True)
class Compiled:
    version: str  # digest of what is enforced; a new version needs a new generation
    policies: list[ParsedPolicy]  # the accepted policies, by ref
    secrets: list[dict]  # Secret manifests referenced by accepted policies
    accepted: frozenset[str]
    issues: dict[str, list[PolicyIssue]] = field(default_factory=dict)

    def document(self, generation: int) -> bytes:
        """The snapshot document (the admin PUT body, the snapshot Secret's content) as
        canonical JSON, written from the policies' encodings: 10,000 policies' JSON is
        megabytes, and each was encoded when it was parsed."""
        policies = b",".join(p.encoded for p in self.policies)
        secrets = _canonical(self.secrets)
        return b'{"formatVersion":%d,"generation":%d,"policies":[%s],"secrets":%s}' % (
            FORMAT_VERSION,
            generation,
            policies,
            secrets,
        )


def compile_cluster(
    objects: Iterable[Mapping | ParsedPolicy],
    secrets: Mapping[tuple[str, str], SecretData],
    settings: ValidationSettings,
) -> Compiled:
    """Validate every policy with the same code as `authgate validate`; leave out the invalid
    ones and the losers of host conflicts; the others are unaffected by their neighbours.
    Objects may come parsed already (PolicyParser), as the controller's do."""
    parsed = [obj if isinstance(obj, ParsedPolicy) else parse_policy(obj) for obj in objects]
    # Each policy's place in the input (`order`, the tie-breaker after age) is its index.
    sources = [dataclasses.replace(p.source, order=i) for i, p in enumerate(parsed) if p.source is not None]
    secret_documents = [
        (f"Secret {ns}/{name}", None, _secret_manifest(ns, name, data)) for (ns, name), data in secrets.items()
    ]
    secret_loaded = parse_manifests(secret_documents)
    parse_issues = [issue for p in parsed for issue in p.issues] + secret_loaded.issues
    result = compile_loaded(Loaded(sources, secret_loaded.secrets, parse_issues), 0, settings)
    issues: dict[str, list[PolicyIssue]] = {}
    for issue in result.issues:
        issues.setdefault(issue.source, []).append(issue)
    accepted = frozenset(source.policy.ref for source in result.accepted)
    by_ref = {p.ref: p for p in parsed}
    used_secrets: dict[tuple[str, str], dict] = {}
    for ref in sorted(accepted):
        namespace = ref.split("/", 1)[0]
        for name in sorted(by_ref[ref].secret_names):
            if (namespace, name) in secrets and (namespace, name) not in used_secrets:
                used_secrets[(namespace, name)] = _secret_manifest(namespace, name, secrets[(namespace, name)])
    return Compiled(
        version=result.snapshot.version,
        policies=[by_ref[ref] for ref in sorted(accepted)],
        secrets=list(used_secrets.values()),
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


def policies_key(parsed: Iterable[ParsedPolicy]) -> bytes:
    """What compilation reads of the policies (identity, age, spec; never status)."""
    digest = hashlib.sha256()
    for policy in parsed:
        digest.update(policy.digest)
    return digest.digest()


def inputs_key(policies: bytes, secrets: Mapping[tuple[str, str], Mapping[str, bytes]]) -> bytes:
    """What compilation depends on: the policies and the values of their Secrets."""
    digest = hashlib.sha256(policies)
    for key in sorted(secrets):
        digest.update(repr((key, sorted(secrets[key].items()))).encode())
    return digest.digest()
