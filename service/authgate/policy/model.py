"""The OAuthPolicy resource (authgate.dev/v1alpha1) as typed, frozen models.

Field names are the public contract of DESIGN.md. Parsing is strict: unknown fields
and wrong types are errors (a typo must never silently weaken a policy). Semantic
checks that need more than one field live in `validate.py`.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

API_VERSION = "authgate.dev/v1alpha1"
KIND = "OAuthPolicy"

# Every asymmetric JOSE signature algorithm (RFC 7518 §3.1, RFC 8037). HS* and none never.
ASYMMETRIC_ALGORITHMS: tuple[str, ...] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)

NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=253)]


class _Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
    )


class SecretKeyRef(_Spec):
    name: Name
    key: Name


class SecretRef(_Spec):
    name: Name


@dataclass(frozen=True)
class RequiredKeys:
    """Field metadata: the keys a whole-Secret reference (`SecretRef`) must find in its Secret."""

    keys: tuple[str, ...]


class Introspection(_Spec):
    endpoint: NonEmpty
    client_id: NonEmpty
    client_secret_ref: SecretKeyRef


ConstraintMode = Literal["Optional", "Required", "Disabled"]


class SenderConstraint(_Spec):
    """How tokens of one issuer must be bound to their sender (RFC 9449 DPoP, RFC 8705 mTLS).

    Optional: a bound token must prove its binding, an unbound one is a plain bearer token.
    Required: every token must carry that binding. Disabled: a token with it is refused.
    In no mode is a binding accepted unchecked.
    """

    dpop: ConstraintMode = "Optional"
    mtls: ConstraintMode = "Optional"


class IssuerSpec(_Spec):
    issuer: NonEmpty
    jwks_uri: NonEmpty | None = None
    audiences: list[NonEmpty] | None = Field(default=None, min_length=1)
    algorithms: list[Literal[ASYMMETRIC_ALGORITHMS]] | None = Field(default=None, min_length=1)  # type: ignore[valid-type]
    clock_skew_seconds: int = Field(default=60, ge=0, le=600)
    require_typ: NonEmpty | None = None
    required_claims: list[NonEmpty] = Field(default_factory=list)
    introspection: Introspection | None = None
    sender_constraint: SenderConstraint = Field(default_factory=SenderConstraint)


class ScopeRole(_Spec):
    scope: NonEmpty
    role: NonEmpty


class ClaimRole(_Spec):
    claim: NonEmpty
    value: NonEmpty
    role: NonEmpty


class Rule(_Spec):
    path_prefix: NonEmpty
    methods: list[NonEmpty] | None = Field(default=None, min_length=1)
    mcp_methods: list[NonEmpty] | None = Field(default=None, min_length=1)
    mcp_names: list[NonEmpty] | None = Field(default=None, min_length=1)
    anonymous: bool = False
    require_scopes: list[NonEmpty] = Field(default_factory=list)
    require_roles: list[NonEmpty] = Field(default_factory=list)


class Cors(_Spec):
    allowed_origins: list[NonEmpty] = Field(min_length=1)


class IdentityHeaders(_Spec):
    subject: NonEmpty = "X-Auth-Subject"
    roles: NonEmpty = "X-Auth-Roles"
    scopes: NonEmpty = "X-Auth-Scopes"
    issuer: NonEmpty = "X-Auth-Issuer"
    client_id: NonEmpty = "X-Auth-Client-Id"
    claims: dict[NonEmpty, NonEmpty] = Field(default_factory=dict)


class FacadeUpstream(_Spec):
    issuer: NonEmpty
    authorization_endpoint: NonEmpty | None = None
    token_endpoint: NonEmpty | None = None
    introspection_endpoint: NonEmpty | None = None
    revocation_endpoint: NonEmpty | None = None
    client_id: NonEmpty
    client_secret_ref: SecretKeyRef | None = None
    scopes: list[NonEmpty] = Field(default_factory=lambda: ["openid"])


class Facade(_Spec):
    issuer: NonEmpty | None = None
    upstream: FacadeUpstream
    consent: Literal["always", "remember"] = "always"
    redirect_uris: Literal["loopback-any-port", "exact"] = "loopback-any-port"
    dynamic_registration: bool = True
    client_metadata_documents: bool = True


class TokenExchange(_Spec):
    token_endpoint: NonEmpty | None = None
    issuer: NonEmpty | None = None
    client_id: NonEmpty
    client_secret_ref: SecretKeyRef | None = None
    # RFC 8705 mTLS: tls.crt and tls.key are required, ca.crt is optional.
    client_certificate_secret_ref: Annotated[SecretRef | None, RequiredKeys(("tls.crt", "tls.key"))] = None
    audience: NonEmpty | None = None
    resource: NonEmpty | None = None
    scopes: list[NonEmpty] = Field(default_factory=list)
    requested_token_type: NonEmpty = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN


class DPoPNonce(_Spec):
    """RFC 9449 §8 server nonces: stateless (an HMAC of the issue time and the policy), so
    every replica accepts every replica's nonce within its lifetime."""

    lifetime_seconds: int = Field(default=300, ge=10, le=3600)


class DPoP(_Spec):
    """What a DPoP proof (RFC 9449 §4) must satisfy at this policy's resource."""

    algorithms: list[Literal[ASYMMETRIC_ALGORITHMS]] | None = Field(default=None, min_length=1)  # type: ignore[valid-type]
    proof_lifetime_seconds: int = Field(default=60, ge=1, le=600)
    nonce: DPoPNonce | None = None


class PolicySpec(_Spec):
    resource: NonEmpty
    hosts: list[NonEmpty] | None = Field(default=None, min_length=1)
    path_prefixes: list[NonEmpty] | None = Field(default=None, min_length=1)
    issuers: list[IssuerSpec] = Field(min_length=1)
    scope_roles: list[ScopeRole] = Field(default_factory=list)
    claim_roles: list[ClaimRole] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    mode: Literal["Enforce", "DryRun"] = "Enforce"
    cors: Cors | None = None
    # default_factory, not a default instance: pydantic deep-copies default values per model.
    identity_headers: IdentityHeaders = Field(default_factory=IdentityHeaders)
    facade: Facade | None = None
    token_exchange: TokenExchange | None = None
    dpop: DPoP = Field(default_factory=DPoP)


class ObjectMeta(BaseModel):
    """The parts of Kubernetes ObjectMeta authgate reads; the rest (labels, managedFields...) is ignored."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, populate_by_name=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    namespace: Annotated[str, StringConstraints(min_length=1, max_length=63)] = "default"
    uid: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = Field(default=None, alias="creationTimestamp")


class OAuthPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    apiVersion: Literal["authgate.dev/v1alpha1"]
    kind: Literal["OAuthPolicy"]
    metadata: ObjectMeta
    spec: PolicySpec
    status: dict | None = None  # written by the operator, never read as policy

    @functools.cached_property
    def content_digest(self) -> bytes:
        """SHA-256 of the policy as canonical JSON (field aliases), made once per parsed
        policy: what a compile's reuse key reads of it (policy/reuse.py)."""
        return hashlib.sha256(self.model_dump_json(by_alias=True).encode()).digest()

    @property
    def ref(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"
