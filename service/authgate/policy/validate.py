"""Semantic validation of OAuthPolicies: pure functions, shared by `authgate validate`,
file mode, the admin API and the operator.

`validate_policy` looks at one policy (plus the Secrets of its namespace);
`resolve_ownership` decides host and prefix conflicts between policies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from authgate.errors import PolicyIssue, TargetError
from authgate.policy.loader import PolicySource, Secrets
from authgate.policy.model import PolicySpec, Rule
from authgate.urls import normalize_host, normalize_path, parse_url, prefix_covers

_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token (methods, header names)
# Header names an identity header may never take: they would let authgate rewrite framing,
# routing or credentials of the upstream request.
RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "www-authenticate",
        "location",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-original-url",
        "x-original-method",
        "x-envoy-auth-headers-to-remove",
    }
)


@dataclass(frozen=True)
class ValidationSettings:
    """The service admin's settings that policy validation must apply."""

    insecure_http: bool = False  # allow http:// URLs (egress still limits them to allowed destinations)


def check_url(value: str, field: str, settings: ValidationSettings, *, https_only: bool = False) -> str | None:
    """A message if `value` is not an absolute https (or permitted http) URL, else None."""
    try:
        parts = parse_url(value)
    except TargetError as error:
        return f"not a valid URL ({error})"
    if parts.scheme not in ("https", "http"):
        return "must be an absolute https URL"
    if parts.scheme == "http" and (https_only or not settings.insecure_http):
        return "must use https (http needs the service's --insecure-http)"
    if parts.userinfo:
        return "must not contain user information"
    if parts.fragment is not None:
        return "must not contain a fragment"
    return None


def default_host(resource: str) -> str:
    return parse_url(resource).host


def default_prefix(resource: str) -> str:
    return normalize_path(parse_url(resource).path or "/")


def effective_hosts(spec: PolicySpec) -> list[str]:
    return [normalize_host(h) for h in spec.hosts] if spec.hosts else [default_host(spec.resource)]


def effective_prefixes(spec: PolicySpec) -> list[str]:
    return [normalize_path(p) for p in spec.path_prefixes] if spec.path_prefixes else [default_prefix(spec.resource)]


def facade_issuer(spec: PolicySpec) -> str | None:
    """The facade's issuer identifier: as configured (without a trailing slash), else https://<first host>."""
    if spec.facade is None:
        return None
    return (spec.facade.issuer or f"https://{effective_hosts(spec)[0]}").rstrip("/")


def _covers_all(earlier: frozenset[str] | None, later: frozenset[str] | None) -> bool:
    """Does a matcher list `earlier` accept everything `later` accepts? None means "any"."""
    if earlier is None:
        return True
    return later is not None and later <= earlier


def _names_cover(earlier: list[str] | None, later: list[str] | None) -> bool:
    """Conservative glob containment: only certain cases count as shadowing."""
    if earlier is None or "*" in earlier:
        return True
    if later is None:
        return False
    from fnmatch import fnmatchcase

    def covered(pattern: str) -> bool:
        if pattern in earlier:
            return True
        literal = not any(c in pattern for c in "*?[")
        return literal and any(fnmatchcase(pattern, e) for e in earlier)

    return all(covered(p) for p in later)


def _upper(values: list[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(v.upper() for v in values)


def _rule_issues(spec: PolicySpec, prefixes: list[str], emit) -> None:
    normalized: list[str | None] = []
    for index, rule in enumerate(spec.rules):
        where = f"spec.rules[{index}]"
        try:
            prefix = normalize_path(rule.path_prefix)
        except TargetError as error:
            emit(f"{where}.pathPrefix", f"invalid path prefix: {error}")
            normalized.append(None)
            continue
        if prefix != rule.path_prefix:
            emit(f"{where}.pathPrefix", f"must be in normalized form ({prefix!r})")
        normalized.append(prefix)
        if not any(prefix_covers(p, prefix) or prefix_covers(prefix, p) for p in prefixes):
            emit(f"{where}.pathPrefix", "outside every path prefix of the policy: the rule can never match")
        for m_index, method in enumerate(rule.methods or []):
            if not _TOKEN_RE.match(method):
                emit(f"{where}.methods[{m_index}]", "not an HTTP method token")
        if rule.anonymous and (rule.require_scopes or rule.require_roles):
            emit(f"{where}.anonymous", "an anonymous rule cannot require scopes or roles")
        for s_index, scope in enumerate(rule.require_scopes):
            if not _valid_scope(scope):
                emit(f"{where}.requireScopes[{s_index}]", "not a valid scope token (RFC 6749 §3.3)")
    for later_index, later in enumerate(spec.rules):
        later_prefix = normalized[later_index]
        if later_prefix is None:
            continue
        for earlier_index in range(later_index):
            earlier: Rule = spec.rules[earlier_index]
            earlier_prefix = normalized[earlier_index]
            if earlier_prefix is None or not prefix_covers(earlier_prefix, later_prefix):
                continue
            if (
                _covers_all(_upper(earlier.methods), _upper(later.methods))
                and _covers_all(_frozen(earlier.mcp_methods), _frozen(later.mcp_methods))
                and _names_cover(earlier.mcp_names, later.mcp_names)
            ):
                emit(
                    f"spec.rules[{later_index}]",
                    f"shadowed by spec.rules[{earlier_index}] (its prefix, methods and MCP "
                    "matchers cover this rule, which can therefore never match)",
                )
                break


def _frozen(values: list[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


_SCOPE_RE = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")


def _valid_scope(scope: str) -> bool:
    return bool(_SCOPE_RE.match(scope))


def _secret_issue(ref, namespace: str, secrets: Secrets, field: str, emit) -> None:
    if ref is None:
        return
    key = getattr(ref, "key", None)
    if not secrets.has(namespace, ref.name):
        emit(field, f"Secret {namespace}/{ref.name} not found", "SecretNotFound")
    elif key is not None and secrets.get(namespace, ref.name, key) is None:
        emit(field, f"Secret {namespace}/{ref.name} has no key {key!r}", "SecretNotFound")


def validate_policy(
    source: PolicySource, secrets: Secrets, settings: ValidationSettings = ValidationSettings()
) -> list[PolicyIssue]:
    """Every semantic problem of one policy; an empty list means it compiles."""
    policy = source.policy
    spec = policy.spec
    namespace = policy.metadata.namespace
    issues: list[PolicyIssue] = []

    def emit(field: str, message: str, reason: str = "Invalid") -> None:
        issues.append(PolicyIssue(source.source, source.document, field, message, reason))

    def url(value: str | None, field: str, *, https_only: bool = False) -> None:
        if value is not None and (problem := check_url(value, field, settings, https_only=https_only)):
            emit(field, problem)

    url(spec.resource, "spec.resource")
    if issues:
        return issues
    for index, host in enumerate(spec.hosts or []):
        try:
            normalize_host(host)
        except TargetError as error:
            emit(f"spec.hosts[{index}]", f"invalid host: {error}")
        if "*" in host:
            emit(f"spec.hosts[{index}]", "wildcards are not supported in v1alpha1")
    prefixes: list[str] = []
    for index, prefix in enumerate(spec.path_prefixes or []):
        try:
            normalized = normalize_path(prefix)
        except TargetError as error:
            emit(f"spec.pathPrefixes[{index}]", f"invalid path prefix: {error}")
            continue
        if normalized != prefix:
            emit(f"spec.pathPrefixes[{index}]", f"must be in normalized form ({normalized!r})")
        prefixes.append(normalized)
    if not spec.path_prefixes:
        try:
            prefixes = [default_prefix(spec.resource)]
        except TargetError as error:
            emit("spec.resource", f"its path cannot be a prefix: {error}")

    seen_issuers: set[str] = set()
    for index, entry in enumerate(spec.issuers):
        where = f"spec.issuers[{index}]"
        url(entry.issuer, f"{where}.issuer")
        if entry.issuer in seen_issuers:
            emit(f"{where}.issuer", "issuer listed twice")
        seen_issuers.add(entry.issuer)
        url(entry.jwks_uri, f"{where}.jwksUri")
        if entry.require_typ is not None and entry.require_typ.lower() not in ("at+jwt", "application/at+jwt"):
            emit(f"{where}.requireTyp", "only at+jwt (RFC 9068) is supported")
        if entry.introspection is not None:
            url(entry.introspection.endpoint, f"{where}.introspection.endpoint")
            _secret_issue(
                entry.introspection.client_secret_ref,
                namespace,
                secrets,
                f"{where}.introspection.clientSecretRef",
                emit,
            )

    scopes_seen: set[str] = set()
    for index, mapping in enumerate(spec.scope_roles):
        if not _valid_scope(mapping.scope):
            emit(f"spec.scopeRoles[{index}].scope", "not a valid scope token (RFC 6749 §3.3)")
        if mapping.scope in scopes_seen:
            emit(f"spec.scopeRoles[{index}].scope", f"scope {mapping.scope!r} is mapped twice")
        scopes_seen.add(mapping.scope)
    for index, mapping in enumerate(spec.claim_roles):
        if any(not part for part in mapping.claim.split(".")):
            emit(f"spec.claimRoles[{index}].claim", "empty segment in claim path")

    _rule_issues(spec, prefixes, emit)

    headers = spec.identity_headers
    names = [
        ("spec.identityHeaders.subject", headers.subject),
        ("spec.identityHeaders.roles", headers.roles),
        ("spec.identityHeaders.scopes", headers.scopes),
        ("spec.identityHeaders.issuer", headers.issuer),
        ("spec.identityHeaders.clientId", headers.client_id),
    ] + [(f"spec.identityHeaders.claims.{claim}", header) for claim, header in headers.claims.items()]
    seen_headers: set[str] = set()
    for field, header in names:
        lowered = header.lower()
        if not _TOKEN_RE.match(header):
            emit(field, "not a valid HTTP header name")
        elif lowered in RESERVED_HEADERS or lowered.startswith(":"):
            emit(field, f"{header} cannot be used as an identity header")
        elif lowered in seen_headers:
            emit(field, f"header {header} is used twice")
        seen_headers.add(lowered)

    if spec.cors is not None:
        for index, origin in enumerate(spec.cors.allowed_origins):
            if origin != "*" and check_url(origin, "", settings) is not None:
                emit(f"spec.cors.allowedOrigins[{index}]", "must be an origin such as https://app.example.com or *")
            elif origin != "*" and parse_url(origin).path not in ("", "/"):
                emit(f"spec.cors.allowedOrigins[{index}]", "an origin has no path")

    if spec.facade is not None:
        facade = spec.facade
        url(facade.issuer, "spec.facade.issuer", https_only=True)
        issuer = facade_issuer(spec)
        assert issuer is not None
        try:
            parts = parse_url(issuer)
        except TargetError:
            issuer_host = None  # reported by url() above
        else:
            if parts.query is not None or parts.fragment is not None:
                emit("spec.facade.issuer", "an issuer has no query or fragment (RFC 8414 §2)")
            issuer_host = parts.host
        owned = set()
        for host in effective_hosts(spec):
            try:
                owned.add(normalize_host(host))
            except TargetError:
                pass
        if facade.issuer is not None and issuer_host is not None and issuer_host not in owned:
            emit("spec.facade.issuer", "the facade issuer's host must be one of this policy's hosts")
        upstream = facade.upstream
        url(upstream.issuer, "spec.facade.upstream.issuer")
        for name in ("authorization_endpoint", "token_endpoint", "introspection_endpoint", "revocation_endpoint"):
            url(getattr(upstream, name), f"spec.facade.upstream.{_camel(name)}")
        if upstream.issuer not in seen_issuers:
            emit("spec.facade.upstream.issuer", "the facade's upstream issuer must be one of spec.issuers")
        _secret_issue(upstream.client_secret_ref, namespace, secrets, "spec.facade.upstream.clientSecretRef", emit)

    if spec.token_exchange is not None:
        exchange = spec.token_exchange
        url(exchange.token_endpoint, "spec.tokenExchange.tokenEndpoint")
        url(exchange.issuer, "spec.tokenExchange.issuer")
        if (exchange.token_endpoint is None) == (exchange.issuer is None):
            emit("spec.tokenExchange", "exactly one of tokenEndpoint and issuer is required")
        if (exchange.client_secret_ref is None) == (exchange.client_certificate_secret_ref is None):
            emit("spec.tokenExchange", "exactly one of clientSecretRef and clientCertificateSecretRef is required")
        _secret_issue(exchange.client_secret_ref, namespace, secrets, "spec.tokenExchange.clientSecretRef", emit)
        cert_ref = exchange.client_certificate_secret_ref
        if cert_ref is not None:
            for key in ("tls.crt", "tls.key"):
                if secrets.has(namespace, cert_ref.name) and secrets.get(namespace, cert_ref.name, key) is None:
                    emit(
                        "spec.tokenExchange.clientCertificateSecretRef", f"Secret has no key {key!r}", "SecretNotFound"
                    )
            if not secrets.has(namespace, cert_ref.name):
                emit(
                    "spec.tokenExchange.clientCertificateSecretRef",
                    f"Secret {namespace}/{cert_ref.name} not found",
                    "SecretNotFound",
                )
        url(exchange.resource, "spec.tokenExchange.resource")
    return issues


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _age_key(source: PolicySource) -> tuple[str, int]:
    # RFC 3339 timestamps from the API sort lexically; file-mode policies have none and
    # keep their input order.
    return (source.policy.metadata.creation_timestamp or "", source.order)


def resolve_ownership(sources: list[PolicySource]) -> tuple[list[PolicySource], list[PolicyIssue]]:
    """Host ownership and prefix conflicts between (individually valid) policies.

    A host belongs to the namespace of the oldest policy claiming it; policies of other
    namespaces claiming it are rejected. Within that namespace, the oldest policy keeps a
    (host, prefix) pair and later claimants are rejected. Returns (accepted, issues).
    """
    owners: dict[str, str] = {}
    claims: dict[tuple[str, str], PolicySource] = {}
    facades: dict[str, PolicySource] = {}
    accepted: list[PolicySource] = []
    issues: list[PolicyIssue] = []
    for source in sorted(sources, key=_age_key):
        spec = source.policy.spec
        namespace = source.policy.metadata.namespace
        hosts, prefixes = effective_hosts(spec), effective_prefixes(spec)
        problems: list[tuple[str, str]] = []
        issuer = facade_issuer(spec)
        if issuer is not None:
            issuer = issuer.lower()  # one facade per issuer, whatever the case of its host
        if issuer is not None and issuer in facades:
            problems.append(("spec.facade.issuer", f"{issuer} is already the facade of {facades[issuer].policy.ref}"))
        for host in hosts:
            owner = owners.get(host)
            if owner is not None and owner != namespace:
                problems.append(("spec.hosts", f"host {host} belongs to namespace {owner}"))
            for prefix in prefixes:
                holder = claims.get((host, prefix))
                if holder is not None:
                    problems.append(
                        ("spec.hosts", f"host {host} and prefix {prefix} are already claimed by {holder.policy.ref}")
                    )
        if problems:
            issues.extend(
                PolicyIssue(source.source, source.document, field, problem, "Conflict") for field, problem in problems
            )
            continue
        if issuer is not None:
            facades[issuer] = source
        for host in hosts:
            owners.setdefault(host, namespace)
            for prefix in prefixes:
                claims[(host, prefix)] = source
        accepted.append(source)
    accepted.sort(key=lambda s: s.order)
    return accepted, issues
