"""Valid policies → one immutable Snapshot. Pure functions: no I/O, no clocks.

The same path serves every input: policy files (`authgate serve --policy`), snapshot
documents pushed by the operator or mounted for bootstrap, and `authgate validate`.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from authgate.caches import Interned
from authgate.collector import collector_paused
from authgate.errors import PolicyError, PolicyIssue
from authgate.policy import reuse
from authgate.policy.defaults import effective_hosts, effective_prefixes, facade_issuer
from authgate.policy.loader import Loaded, PolicySource, Secrets, load_files, parse_manifests
from authgate.policy.model import ASYMMETRIC_ALGORITHMS, IssuerSpec, PolicySpec
from authgate.policy.ownership import resolve_ownership
from authgate.policy.secret_refs import secret_value
from authgate.policy.snapshot import (
    FORMAT_VERSION,
    ClaimRoleMapping,
    CompiledDPoP,
    CompiledExchange,
    CompiledFacade,
    CompiledIssuer,
    CompiledPolicy,
    CompiledRule,
    CompiledUpstream,
    IdentityHeaderNames,
    IntrospectionClient,
    Snapshot,
)
from authgate.policy.validate import validate_policy
from authgate.policy.validation import ValidationSettings
from authgate.urls import normalize_path, parse_config_url

_UID_NAMESPACE = uuid.UUID("6f1f4a9e-8d55-4d57-9a0e-3b3c8b0f7a11")


def normalize_audience(value: str) -> str:
    """Audiences compare exactly, except that a URL's scheme and host are case-insensitive."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return value
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    return f"{scheme.lower()}://{rest[:end].lower()}{rest[end:]}"  # a plain string rule: it cannot fail


def resource_metadata_url(resource: str) -> str:
    """RFC 9728 §3.1: the well-known segment goes between the host and the resource's path."""
    parts = parse_config_url(resource)  # validated
    path = parts.path if parts.path not in ("", "/") else ""
    return f"{parts.origin}/.well-known/oauth-protected-resource{path}"


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _digest(value: object) -> bytes:
    return hashlib.sha256(_canonical(value).encode()).digest()


# One frozenset object per distinct set across compiles: policies repeat the same
# algorithms, claims read, methods and roles, and every object a snapshot keeps is one
# more for each pass of the garbage collector.
_sets: Interned[frozenset[str]] = Interned()


def _shared(items) -> frozenset[str]:
    return _sets(frozenset(items))


def _compile_rule(index: int, rule) -> CompiledRule:
    pattern = None
    if rule.mcp_names is not None:
        pattern = re.compile("|".join(f"(?:{fnmatch.translate(name)})" for name in rule.mcp_names))
    return CompiledRule(
        index=index,
        path_prefix=normalize_path(rule.path_prefix),
        methods=None if rule.methods is None else _shared(m.upper() for m in rule.methods),
        mcp_methods=None if rule.mcp_methods is None else _shared(rule.mcp_methods),
        mcp_names=None if rule.mcp_names is None else tuple(rule.mcp_names),
        mcp_name_pattern=pattern,
        anonymous=rule.anonymous,
        require_scopes=tuple(rule.require_scopes),
        require_roles=_shared(rule.require_roles),
    )


def _compile_exchange(spec: PolicySpec, namespace: str, name: str, uid: str, secrets: Secrets):
    exchange = spec.token_exchange
    if exchange is None:
        return None
    secret = None
    if exchange.client_secret_ref is not None:
        secret = secret_value(secrets, namespace, exchange.client_secret_ref)
    certificate = None
    if exchange.client_certificate_secret_ref is not None:
        cert_name = exchange.client_certificate_secret_ref.name
        certificate = (
            secrets.get(namespace, cert_name, "tls.crt") or b"",
            secrets.get(namespace, cert_name, "tls.key") or b"",
            secrets.get(namespace, cert_name, "ca.crt"),
        )
    identity = {
        "policy": f"{namespace}/{name}",
        "uid": uid,
        "endpoint": exchange.token_endpoint or exchange.issuer,
        "client": exchange.client_id,
        "audience": exchange.audience,
        "resource": exchange.resource,
        "scope": sorted(exchange.scopes),
        "type": exchange.requested_token_type,
    }
    return CompiledExchange(
        token_endpoint=exchange.token_endpoint,
        issuer=exchange.issuer,
        client_id=exchange.client_id,
        client_secret=secret,
        client_certificate=certificate,
        audience=exchange.audience,
        resource=exchange.resource,
        scopes=tuple(exchange.scopes),
        requested_token_type=exchange.requested_token_type,
        cache_key=_digest(identity),
    )


def _compile_facade(spec: PolicySpec, namespace: str, secrets: Secrets) -> CompiledFacade | None:
    facade = spec.facade
    if facade is None:
        return None
    issuer = facade_issuer(spec)
    assert issuer is not None
    parts = parse_config_url(issuer)  # validated
    upstream = facade.upstream
    secret = None
    if upstream.client_secret_ref is not None:
        secret = secret_value(secrets, namespace, upstream.client_secret_ref)
    return CompiledFacade(
        issuer=issuer,
        host=parts.host,
        path=parts.path,
        upstream=CompiledUpstream(
            issuer=upstream.issuer,
            authorization_endpoint=upstream.authorization_endpoint,
            token_endpoint=upstream.token_endpoint,
            introspection_endpoint=upstream.introspection_endpoint,
            revocation_endpoint=upstream.revocation_endpoint,
            client_id=upstream.client_id,
            client_secret=secret,
            scopes=tuple(upstream.scopes),
        ),
        consent=facade.consent,
        redirect_uris=facade.redirect_uris,
        dynamic_registration=facade.dynamic_registration,
        client_metadata_documents=facade.client_metadata_documents,
    )


# What the facade's introspection answer repeats of an access token (facade/introspect.py).
FACADE_INTROSPECTION_CLAIMS = ("exp", "iat", "nbf", "sub", "aud", "iss")


def _claims_read(spec: PolicySpec) -> frozenset[str]:
    """The top-level claims a verified token must keep for this policy (nothing else is kept:
    a cached token is its subject, client, scopes and expiry plus these)."""
    names = {mapping.claim.split(".", 1)[0] for mapping in spec.claim_roles}
    names.update(claim.split(".", 1)[0] for claim in spec.identity_headers.claims)
    if spec.facade is not None:
        names.update(FACADE_INTROSPECTION_CLAIMS)
    return _shared(names)


def _compile_issuer(entry: IssuerSpec, spec: PolicySpec, ref: str, uid: str, secrets: Secrets) -> CompiledIssuer:
    namespace = ref.split("/", 1)[0]
    claims_read = _claims_read(spec)
    audiences = frozenset(normalize_audience(a) for a in (entry.audiences or [spec.resource]))
    algorithms = _shared(entry.algorithms or ASYMMETRIC_ALGORITHMS)
    introspection = None
    if entry.introspection is not None:
        secret = secret_value(secrets, namespace, entry.introspection.client_secret_ref)
        introspection = IntrospectionClient(entry.introspection.endpoint, entry.introspection.client_id, secret)
    identity = {
        "policy": ref,
        "uid": uid,
        "issuer": entry.issuer,
        "jwksUri": entry.jwks_uri,
        "audiences": sorted(audiences),
        "algorithms": sorted(algorithms),
        "skew": entry.clock_skew_seconds,
        "typ": entry.require_typ,
        "claims": entry.required_claims,
        "dpop": entry.sender_constraint.dpop,
        "mtls": entry.sender_constraint.mtls,
        "claimsRead": sorted(claims_read),
    }
    return CompiledIssuer(
        issuer=entry.issuer,
        jwks_uri=entry.jwks_uri,
        audiences=audiences,
        algorithms=algorithms,
        clock_skew_seconds=entry.clock_skew_seconds,
        require_typ=entry.require_typ,
        required_claims=tuple(entry.required_claims),
        introspection=introspection,
        dpop=entry.sender_constraint.dpop,
        mtls=entry.sender_constraint.mtls,
        claims_read=claims_read,
        cache_key=_digest(identity),
    )


def _compile_dpop(spec: PolicySpec) -> CompiledDPoP:
    modes = [entry.sender_constraint.dpop for entry in spec.issuers]
    settings = spec.dpop
    return CompiledDPoP(
        algorithms=_shared(settings.algorithms or ASYMMETRIC_ALGORITHMS),
        proof_lifetime_seconds=settings.proof_lifetime_seconds,
        nonce_lifetime_seconds=settings.nonce.lifetime_seconds if settings.nonce is not None else None,
        accepted=any(mode != "Disabled" for mode in modes),
        required=all(mode == "Required" for mode in modes),
    )


def compile_policy(source: PolicySource, secrets: Secrets) -> CompiledPolicy:
    """Compile one policy that `validate_policy` accepted."""
    policy = source.policy
    spec: PolicySpec = policy.spec
    namespace, name = policy.metadata.namespace, policy.metadata.name
    uid = policy.metadata.uid or str(uuid.uuid5(_UID_NAMESPACE, f"{namespace}/{name}"))

    issuers = [_compile_issuer(entry, spec, f"{namespace}/{name}", uid, secrets) for entry in spec.issuers]

    scope_roles: dict[str, tuple[str, ...]] = {}
    for mapping in spec.scope_roles:
        scope_roles[mapping.scope] = (*scope_roles.get(mapping.scope, ()), mapping.role)
    rules = tuple(_compile_rule(index, rule) for index, rule in enumerate(spec.rules))
    scopes = {m.scope for m in spec.scope_roles} | {s for r in spec.rules for s in r.require_scopes}
    scopes.discard("offline_access")  # RFC 9728 metadata never advertises it (MCP)

    hosts = tuple(effective_hosts(spec))
    facade = _compile_facade(spec, namespace, secrets)
    if facade is not None:
        authorization_servers: tuple[str, ...] = (facade.issuer,)
    else:
        authorization_servers = tuple(entry.issuer for entry in spec.issuers)
    headers = spec.identity_headers
    return CompiledPolicy(
        token_exchange=_compile_exchange(spec, namespace, name, uid, secrets),
        facade=facade,
        namespace=namespace,
        name=name,
        uid=uid,
        resource=spec.resource,
        resource_metadata_url=resource_metadata_url(spec.resource),
        hosts=hosts,
        path_prefixes=tuple(effective_prefixes(spec)),
        issuers=tuple(issuers),
        scope_roles=scope_roles,
        claim_roles=tuple(ClaimRoleMapping(tuple(m.claim.split(".")), m.value, m.role) for m in spec.claim_roles),
        rules=rules,
        dry_run=spec.mode == "DryRun",
        cors_origins=_shared(spec.cors.allowed_origins if spec.cors else ()),
        identity_headers=IdentityHeaderNames(
            subject=headers.subject,
            roles=headers.roles,
            scopes=headers.scopes,
            issuer=headers.issuer,
            client_id=headers.client_id,
            claims=tuple((tuple(claim.split(".")), header) for claim, header in headers.claims.items()),
        ),
        scopes_supported=tuple(sorted(scopes)),
        authorization_servers=authorization_servers,
        dpop=_compile_dpop(spec),
        mtls_required=any(entry.sender_constraint.mtls == "Required" for entry in spec.issuers),
        token_cache_key=hashlib.sha256(b"".join(entry.cache_key for entry in issuers)).digest()[:16],
    )


def build_snapshot(policies: list[CompiledPolicy], generation: int, version: str) -> Snapshot:
    routes: dict[str, list[tuple[str, CompiledPolicy]]] = {}
    for policy in policies:
        for host in policy.hosts:
            for prefix in policy.path_prefixes:
                routes.setdefault(host, []).append((prefix, policy))
    ordered = {
        host: tuple(sorted(entries, key=lambda entry: len(entry[0]), reverse=True)) for host, entries in routes.items()
    }
    facades: dict[str, list[CompiledPolicy]] = {}
    for policy in policies:
        if policy.facade is not None:
            facades.setdefault(policy.facade.host, []).append(policy)
    return Snapshot(
        generation,
        version,
        tuple(policies),
        ordered,
        {host: tuple(entries) for host, entries in facades.items()},
    )


@dataclass(frozen=True)
class CompileResult:
    snapshot: Snapshot
    accepted: list[PolicySource]
    issues: list[PolicyIssue]  # per-policy problems; policies with issues are left out


def version_part(source: PolicySource) -> str:
    """One policy's share of `content_version`: its identity and spec as canonical JSON."""
    metadata = source.policy.metadata
    part = [metadata.namespace, metadata.name, metadata.uid, source.policy.spec.model_dump(mode="json", by_alias=True)]
    return _canonical(part)


def content_version(loaded: Loaded, accepted: list[PolicySource], parts: list[str]) -> str:
    """A digest of what is enforced: accepted policies (`parts`, their `version_part`s in
    order) and the Secret values they can see. The canonical JSON of one object
    {"policies": [...], "secrets": [...]}, written from its parts."""
    namespaces = {s.policy.metadata.namespace for s in accepted}
    secrets = sorted(
        [ns, name, key, hashlib.sha256(value).hexdigest()]
        for (ns, name), data in loaded.secrets.data.items()
        if ns in namespaces
        for key, value in data.items()
    )
    content = f'{{"policies":[{",".join(parts)}],"secrets":{_canonical(secrets)}}}'
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def compile_loaded(loaded: Loaded, generation: int, settings: ValidationSettings) -> CompileResult:
    """Compile what is valid; report what is not. Callers decide whether issues are fatal.
    (The garbage collector waits meanwhile: authgate/collector.py.)"""
    with collector_paused():
        return _compile_loaded(loaded, generation, settings)


def _compile_loaded(loaded: Loaded, generation: int, settings: ValidationSettings) -> CompileResult:
    issues = list(loaded.issues)
    valid: list[PolicySource] = []
    reuse_key = reuse.Keys(loaded.secrets, settings)
    keys: dict[int, bytes] = {}  # id(source) → its reuse key
    reused: dict[bytes, reuse.Reused] = {}
    for source in loaded.policies:
        key = keys[id(source)] = reuse_key(source)
        found = reuse.MEMO.get(key)
        if found is not None:  # validated without issues and compiled before, from the same inputs
            reused[key] = found
            valid.append(source)
            continue
        problems = validate_policy(source, loaded.secrets, settings)
        issues.extend(problems)
        if not problems:
            valid.append(source)
    seen: dict[str, PolicySource] = {}
    unique: list[PolicySource] = []
    for source in valid:
        ref = source.policy.ref
        if ref in seen:
            issues.append(PolicyIssue(source.source, source.document, "metadata.name", f"duplicate policy {ref}"))
        else:
            seen[ref] = source
            unique.append(source)
    accepted, conflicts = resolve_ownership(unique)
    issues.extend(conflicts)
    compiled, parts = [], []
    for source in accepted:
        key = keys[id(source)]
        done = reused.get(key)
        if done is None:
            done = reuse.Reused(compile_policy(source, loaded.secrets), version_part(source))
        reuse.MEMO.put(key, done)
        compiled.append(done.compiled)
        parts.append(done.version_part)
    reuse.MEMO.finish()
    version = content_version(loaded, accepted, parts)
    return CompileResult(build_snapshot(compiled, generation, version), accepted, issues)


def compile_strict(loaded: Loaded, generation: int, settings: ValidationSettings) -> Snapshot:
    """All or nothing: any issue raises PolicyError and nothing is returned."""
    result = compile_loaded(loaded, generation, settings)
    if result.issues:
        raise PolicyError(result.issues)
    return result.snapshot


def _secret_manifest(namespace: str, name: str, data: dict[str, bytes]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": namespace, "name": name},
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


def snapshot_document(loaded: Loaded, generation: int, raw_policies: list[dict]) -> dict:
    """The wire form a snapshot travels in (admin PUT, bootstrap Secret)."""
    return {
        "formatVersion": FORMAT_VERSION,
        "generation": generation,
        "policies": raw_policies,
        "secrets": [_secret_manifest(ns, name, dict(data)) for (ns, name), data in loaded.secrets.data.items()],
    }


def compile_files(paths: list[str | Path], settings: ValidationSettings, generation: int = 1) -> Snapshot:
    loaded = load_files(paths)
    return compile_strict(loaded, generation, settings)


def compile_document(document: object, settings: ValidationSettings) -> Snapshot:
    """A snapshot document (admin PUT or bootstrap), strictly: it was already validated once."""
    source = "<snapshot>"
    if not isinstance(document, dict):
        raise PolicyError([PolicyIssue(source, None, "", "snapshot must be a JSON object")])
    issues = []
    if document.get("formatVersion") != FORMAT_VERSION:
        issues.append(PolicyIssue(source, None, "formatVersion", f"unsupported (this service reads {FORMAT_VERSION})"))
    generation = document.get("generation")
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        issues.append(PolicyIssue(source, None, "generation", "must be a non-negative integer"))
    policies, secrets = document.get("policies", []), document.get("secrets", [])
    if not isinstance(policies, list) or not isinstance(secrets, list):
        issues.append(PolicyIssue(source, None, "policies", "policies and secrets must be lists"))
    unknown = set(document) - {"formatVersion", "generation", "policies", "secrets"}
    if unknown:
        issues.append(PolicyIssue(source, None, sorted(unknown)[0], "unknown field"))
    if issues:
        raise PolicyError(issues)
    with collector_paused():  # it ends after the parsed manifests are gone (collector.py)
        return _compile_manifests(policies, secrets, source, generation, settings)


def _compile_manifests(
    policies: list, secrets: list, source: str, generation: int, settings: ValidationSettings
) -> Snapshot:
    manifests = [(f"{source} policies[{i}]", None, p) for i, p in enumerate(policies)]
    manifests += [(f"{source} secrets[{i}]", None, s) for i, s in enumerate(secrets)]
    return compile_strict(parse_manifests(manifests), generation, settings)
