"""What every section check of `validate.py` shares: the admin's settings, the URL rule,
the scope-token rule, and the collector the checks report their issues to."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from authgate.errors import PolicyIssue, TargetError
from authgate.policy.loader import PolicySource, Secrets
from authgate.policy.secret_refs import SecretReference, reference_problems, secret_refs
from authgate.urls import parse_config_url

TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token (methods, header names)
_SCOPE_RE = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")  # RFC 6749 §3.3 scope-token


@dataclass(frozen=True)
class ValidationSettings:
    """The service admin's settings that policy validation must apply."""

    insecure_http: bool = False  # allow http:// URLs (egress still limits them to allowed destinations)


def check_url(value: str, field: str, settings: ValidationSettings, *, https_only: bool = False) -> str | None:
    """A message if `value` is not an absolute https (or permitted http) URL, else None."""
    try:
        parts = parse_config_url(value)
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


def valid_scope(scope: str) -> bool:
    return bool(_SCOPE_RE.match(scope))


@dataclass
class Findings:
    """The issues of one policy, in the order the checks find them."""

    source: PolicySource
    secrets: Secrets
    settings: ValidationSettings
    issues: list[PolicyIssue] = field(default_factory=list)
    _unchecked: list[SecretReference] | None = None

    def emit(self, field: str, message: str, reason: str = "Invalid") -> None:
        self.issues.append(PolicyIssue(self.source.source, self.source.document, field, message, reason))

    def url(self, value: str | None, field: str, *, https_only: bool = False) -> None:
        if value is not None and (problem := check_url(value, field, self.settings, https_only=https_only)):
            self.emit(field, problem)

    def secret_references(self, under: str = "") -> None:
        """Report the unresolvable Secret references below the field path `under` (each once)."""
        if self._unchecked is None:
            self._unchecked = secret_refs(self.source.policy.spec)
        namespace = self.source.policy.metadata.namespace
        for ref in [r for r in self._unchecked if r.field.startswith(under)]:
            self._unchecked.remove(ref)
            for problem in reference_problems(ref, namespace, self.secrets):
                self.emit(ref.field, problem, "SecretNotFound")
