"""The compiled, immutable policy snapshot the auth service enforces.

Built once per policy change by `compile.py`; the service swaps the whole object
atomically (one attribute assignment), so a check never sees half of an update.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from authgate.urls import prefix_covers

FORMAT_VERSION = 1


@dataclass(frozen=True)
class IntrospectionClient:
    endpoint: str
    client_id: str
    client_secret: str = field(repr=False)


@dataclass(frozen=True)
class CompiledExchange:
    """spec.tokenExchange with its Secrets resolved (RFC 8693)."""

    token_endpoint: str | None
    issuer: str | None  # the token endpoint is discovered from this issuer's metadata
    client_id: str
    client_secret: str | None = field(repr=False)
    client_certificate: tuple[bytes, bytes, bytes | None] | None = field(repr=False)  # tls.crt, tls.key, ca.crt
    audience: str | None
    resource: str | None
    scopes: tuple[str, ...]
    requested_token_type: str
    # Identity of this configuration for the exchanged-token cache (policy, endpoint, client,
    # audience, resource, scope, requested type): never shared across any of them.
    cache_key: bytes = field(repr=False)


@dataclass(frozen=True)
class CompiledUpstream:
    """spec.facade.upstream with its Secret resolved: the facade's own client at the real IdP."""

    issuer: str
    authorization_endpoint: str | None  # None: from the issuer's discovery document
    token_endpoint: str | None
    introspection_endpoint: str | None
    revocation_endpoint: str | None
    client_id: str
    client_secret: str | None = field(repr=False)  # None: a public client (PKCE only)
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class CompiledFacade:
    """spec.facade: where the facade answers and how it behaves."""

    issuer: str  # exactly as clients see it (RFC 8414 §2), no trailing slash
    host: str  # normalized host of the issuer, for routing on the public port
    path: str  # the issuer's path ("" at the root); endpoints live under <path>/oauth2/
    upstream: CompiledUpstream
    consent: str  # always | remember
    redirect_uris: str  # loopback-any-port | exact
    dynamic_registration: bool
    client_metadata_documents: bool

    def endpoint(self, name: str) -> str:
        return f"{self.issuer}/oauth2/{name}"


@dataclass(frozen=True)
class CompiledIssuer:
    issuer: str
    jwks_uri: str | None  # None: discovered from the issuer's metadata
    audiences: frozenset[str]  # normalized (see tokens.normalize_audience)
    algorithms: frozenset[str]
    clock_skew_seconds: int
    require_typ: str | None
    required_claims: tuple[str, ...]
    introspection: IntrospectionClient | None
    dpop: str  # spec.issuers[].senderConstraint: Optional | Required | Disabled
    mtls: str
    # The top-level claims the owning policy reads (claimRoles, identityHeaders.claims, the
    # facade's introspection answer): all a verified token keeps of its claims.
    claims_read: frozenset[str]
    # Identity of this entry for the verified-token cache: a digest of every field above
    # plus the owning policy, so a cache hit never crosses a trust boundary.
    cache_key: bytes

    @property
    def key_source(self) -> tuple[str, str | None]:
        """What the JWKS cache is keyed by: (issuer, jwksUri)."""
        return (self.issuer, self.jwks_uri)


@dataclass(frozen=True)
class CompiledDPoP:
    """spec.dpop, and what the policy's issuer entries make of it."""

    algorithms: frozenset[str]
    proof_lifetime_seconds: int
    nonce_lifetime_seconds: int | None  # None: no server nonces
    accepted: bool  # some issuer entry accepts DPoP-bound tokens
    required: bool  # every issuer entry requires them (so no Bearer challenge)


@dataclass(frozen=True)
class CompiledRule:
    index: int
    path_prefix: str
    methods: frozenset[str] | None
    mcp_methods: frozenset[str] | None
    mcp_names: tuple[str, ...] | None
    mcp_name_pattern: re.Pattern[str] | None
    anonymous: bool
    require_scopes: tuple[str, ...]
    require_roles: frozenset[str]

    def matches(self, path: str, method: str, mcp_method: str | None, mcp_name: str | None) -> bool:
        if not prefix_covers(self.path_prefix, path):
            return False
        if self.methods is not None and method not in self.methods:
            return False
        if self.mcp_methods is not None and mcp_method not in self.mcp_methods:
            return False
        return self.mcp_name_pattern is None or (
            mcp_name is not None and self.mcp_name_pattern.fullmatch(mcp_name) is not None
        )


@dataclass(frozen=True)
class ClaimRoleMapping:
    path: tuple[str, ...]
    value: str
    role: str


@dataclass(frozen=True)
class IdentityHeaderNames:
    subject: str
    roles: str
    scopes: str
    issuer: str
    client_id: str
    claims: tuple[tuple[tuple[str, ...], str], ...]  # (claim dot path, header name)

    @property
    def all(self) -> tuple[str, ...]:
        return (
            self.subject,
            self.roles,
            self.scopes,
            self.issuer,
            self.client_id,
            *(header for _, header in self.claims),
        )


@dataclass(frozen=True)
class CompiledPolicy:
    namespace: str
    name: str
    uid: str
    resource: str
    resource_metadata_url: str
    hosts: tuple[str, ...]
    path_prefixes: tuple[str, ...]
    issuers: tuple[CompiledIssuer, ...]
    scope_roles: dict[str, tuple[str, ...]]
    claim_roles: tuple[ClaimRoleMapping, ...]
    rules: tuple[CompiledRule, ...]
    dry_run: bool
    cors_origins: frozenset[str]
    identity_headers: IdentityHeaderNames
    scopes_supported: tuple[str, ...]
    authorization_servers: tuple[str, ...]
    # Identity of the issuer list for the verified-token cache: a digest of every entry's
    # `cache_key`, in order, so a token is looked up once per check however many issuers the
    # policy trusts, and never crosses to a policy (or issuer list) that would judge it otherwise.
    token_cache_key: bytes = field(repr=False)
    token_exchange: CompiledExchange | None = None
    facade: CompiledFacade | None = None
    dpop: CompiledDPoP = CompiledDPoP(frozenset(), 60, None, accepted=False, required=False)
    mtls_required: bool = False  # some issuer entry requires certificate-bound tokens (RFC 8705)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def issuer_for(self, issuer: str) -> CompiledIssuer | None:
        for entry in self.issuers:
            if entry.issuer == issuer:
                return entry
        return None

    def match_rule(self, path: str, method: str, mcp_method: str | None, mcp_name: str | None) -> CompiledRule | None:
        for rule in self.rules:
            if rule.matches(path, method, mcp_method, mcp_name):
                return rule
        return None


@dataclass(frozen=True)
class Snapshot:
    generation: int
    version: str  # digest of the policy content (not of the generation)
    policies: tuple[CompiledPolicy, ...]
    # host → [(prefix, policy)] longest prefix first
    routes: dict[str, tuple[tuple[str, CompiledPolicy], ...]]
    # facade host → the policies with a facade there (the public port routes by host, then path)
    facades: dict[str, tuple[CompiledPolicy, ...]] = field(default_factory=dict, repr=False, compare=False)

    def route(self, host: str, path: str) -> CompiledPolicy | None:
        for prefix, policy in self.routes.get(host, ()):
            if prefix_covers(prefix, path):
                return policy
        return None

    def named_on_host(self, host: str, ref: str) -> CompiledPolicy | None:
        """The policy `ref` when it covers `host`, else None. Only the namespace that owns a
        host has policies on it (compile.resolve_ownership), so a reference can pick among
        that namespace's policies for the host, never one of another host or namespace."""
        for _, policy in self.routes.get(host, ()):
            if policy.ref == ref:
                return policy
        return None


EMPTY_SNAPSHOT = Snapshot(generation=0, version="", policies=(), routes={})
