"""One error hierarchy for authgate.

Callers catch by meaning: a bad token, keys that cannot be had, a refused outbound
call, a bad policy. Each adapter maps these to its dialect in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass


class AuthgateError(Exception):
    """Base of every error authgate raises on purpose."""


class TokenError(AuthgateError):
    """The caller's token is unusable. `error` is the RFC 6750 code, `reason` is for logs."""

    def __init__(self, reason: str, error: str = "invalid_token") -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


class KeysUnavailable(AuthgateError):
    """An issuer's signing keys cannot be had (cold cache, IdP down): fail closed with 503."""

    def __init__(self, issuer: str, reason: str) -> None:
        super().__init__(f"keys of {issuer} unavailable: {reason}")
        self.issuer = issuer
        self.reason = reason


class DiscoveryFailed(AuthgateError):
    """An issuer's authorization-server metadata cannot be had, or does not name what is needed."""

    def __init__(self, issuer: str, reason: str) -> None:
        super().__init__(f"discovery of {issuer} failed: {reason}")
        self.issuer = issuer
        self.reason = reason


class EgressError(AuthgateError):
    """An outbound call failed or was refused. `reason` is a short machine-friendly word."""

    reason = "egress_error"

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"{url}: {detail}")
        self.url = url
        self.detail = detail


class EgressBlocked(EgressError):
    """The destination is not allowed (scheme, address range, deny list)."""

    reason = "egress_blocked"


class EgressTimeout(EgressError):
    reason = "egress_timeout"


class EgressTooLarge(EgressError):
    reason = "egress_too_large"


class EgressRedirect(EgressError):
    """The server answered with a redirect; authgate never follows one."""

    reason = "egress_redirect"


class EgressBadResponse(EgressError):
    """Unexpected status, or a body that is not what the caller needs (e.g. not a JSON object)."""

    reason = "egress_bad_response"

    def __init__(self, url: str, detail: str, status_code: int | None = None) -> None:
        super().__init__(url, detail)
        self.status_code = status_code


@dataclass(frozen=True)
class PolicyIssue:
    """One precise problem in a policy source: where it is and what is wrong."""

    source: str  # file name, or "<snapshot>" / "namespace/name"
    document: int | None  # 1-based index of the YAML document in a stream
    field: str  # dotted path, e.g. spec.issuers[0].jwksUri
    message: str
    reason: str = "Invalid"  # machine reason, e.g. Invalid, Conflict, SecretNotFound

    def __str__(self) -> str:
        where = self.source
        if self.document is not None:
            where += f" (document {self.document})"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class PolicyError(AuthgateError):
    """A policy set could not be loaded; nothing was changed."""

    def __init__(self, issues: list[PolicyIssue]) -> None:
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues
