"""One error hierarchy for authgate: every exception it raises on purpose is defined here.

    AuthgateError
    ├── InputError (ValueError)        untrusted input is malformed: the port's bad-input answer
    │   ├── JSONInputError             not bounded, strict JSON (bounded_json)
    │   ├── TargetError                a URL, host or path that cannot be normalized (urls)
    │   └── BadRequest                 a check request that cannot be read (400)
    ├── TokenError                     the caller's token is unusable (401 invalid_token)
    │   └── ProofError                 its DPoP proof is (401 invalid_dpop_proof, use_dpop_nonce)
    ├── KeysUnavailable                an issuer's keys cannot be had (503, never 401)
    ├── KeysFetchError                 one key-set fetch failed (the last good keys stay)
    ├── DiscoveryFailed                an issuer's metadata cannot be had
    ├── ExchangeFailed                 RFC 8693 exchange failed: `status` 401 or 503
    ├── EgressError                    an outbound call failed or was refused (`reason`)
    │   ├── EgressBlocked, EgressTimeout, EgressTooLarge, EgressRedirect
    │   └── EgressBadResponse
    ├── SealError                      a sealed value does not open
    ├── SealingKeyError                the --sealing-keys file is unusable
    ├── PolicyError                    a policy set does not load (`issues`); nothing changed
    │   └── StaleSnapshot              older than, or conflicting with, the enforced one
    ├── SnapshotTooLarge               the compiled snapshot does not fit a Secret (operator)
    ├── UpstreamUnavailable            the facade's identity provider cannot be reached (503)
    └── ProtocolError                  an OAuth error with its RFC code: `error`, `description`
        ├── OAuthError                 answered as RFC 6749 §5.2 JSON with `status`
        ├── RegistrationError          RFC 7591 §3.2.2
        ├── ClientError                invalid_client (RFC 6749 §5.2)
        │   └── UnknownClient
        ├── RedirectError              a redirect URI that may not be registered or used
        ├── ShowError                  shown to the user, never redirected (the client is not trusted)
        ├── RedirectableError          sent to the client's validated redirect_uri
        └── UpstreamRefused            the identity provider's own RFC error

Callers catch by meaning; each adapter maps these to its dialect in exactly one place
(check: decision.py; facade: its error mapping; ports: their apps).
"""

from __future__ import annotations

from dataclasses import dataclass


class AuthgateError(Exception):
    """Base of every error authgate raises on purpose."""


class InputError(AuthgateError, ValueError):
    """Untrusted input is malformed; `str()` says why, briefly (it may reach the client)."""


class JSONInputError(InputError):
    """Not the bounded, strict JSON expected (bounded_json)."""


class TargetError(InputError):
    """A URL, host or path cannot be normalized; the caller answers 400."""


class BadRequest(InputError):
    """The check request itself is malformed; answered with 400."""


class TokenError(AuthgateError):
    """The caller's token is unusable. `error` is the RFC 6750 code, `reason` is for logs."""

    def __init__(self, reason: str, error: str = "invalid_token") -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


class ProofError(TokenError):
    """A DPoP proof (RFC 9449) is missing or unusable: `error` is `invalid_dpop_proof`, or
    `use_dpop_nonce` when only a (fresh) server nonce is missing (§8)."""

    def __init__(self, reason: str, error: str = "invalid_dpop_proof") -> None:
        super().__init__(reason, error)


class KeysUnavailable(AuthgateError):
    """An issuer's signing keys cannot be had (cold cache, IdP down): fail closed with 503."""

    def __init__(self, issuer: str, reason: str) -> None:
        super().__init__(f"keys of {issuer} unavailable: {reason}")
        self.issuer = issuer
        self.reason = reason


class KeysFetchError(AuthgateError):
    """One fetch of a key set failed (the set stays usable until its stale limit)."""


class ExchangeFailed(AuthgateError):
    """`status` is what the check answers: 401 (subject token refused) or 503."""

    def __init__(self, status: int, reason: str, upstream_error: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.upstream_error = upstream_error


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


class SealingKeyError(AuthgateError):
    """The --sealing-keys file is unusable."""


class SealError(AuthgateError):
    """A sealed value does not open: tampered, expired, or sealed for something else."""


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


class StaleSnapshot(PolicyError):
    """A snapshot older than (or conflicting with) the one being enforced."""


class SnapshotTooLarge(AuthgateError):
    """The compiled snapshot does not fit in a Secret."""


class UpstreamUnavailable(AuthgateError):
    """The facade's identity provider cannot be reached or answered nonsense (503 to the client)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProtocolError(AuthgateError):
    """An OAuth protocol error: `error` is its RFC code, `description` the text the client sees."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class OAuthError(ProtocolError):
    """Answered as RFC 6749 §5.2 JSON with `status` (and extra response headers)."""

    def __init__(self, status: int, error: str, description: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error, description)
        self.status = status
        self.headers = headers or {}


class RegistrationError(ProtocolError):
    """RFC 7591 §3.2.2: `error` is invalid_redirect_uri or invalid_client_metadata."""


class ClientError(ProtocolError):
    """The client is unknown or failed to authenticate (RFC 6749 §5.2 invalid_client)."""

    def __init__(self, description: str) -> None:
        super().__init__("invalid_client", description)


class UnknownClient(ClientError):
    """No such client: not one this facade registered (or it expired)."""

    def __init__(self) -> None:
        super().__init__("unknown client")


class RedirectError(ProtocolError):
    """Why a redirect URI is refused; the text goes to the client as error_description."""

    def __init__(self, description: str) -> None:
        super().__init__("invalid_redirect_uri", description)


class ShowError(ProtocolError):
    """An error for the user's browser: the client or redirect_uri cannot be trusted."""

    def __init__(self, description: str) -> None:
        super().__init__("invalid_request", description)


class RedirectableError(ProtocolError):
    """An error for the client, sent to its (validated) redirect_uri."""

    def __init__(self, redirect_uri: str, error: str, description: str, state: str | None) -> None:
        super().__init__(error, description)
        self.redirect_uri = redirect_uri
        self.state = state


class UpstreamRefused(ProtocolError):
    """The identity provider refused the request (an RFC 6749 error for the client)."""
