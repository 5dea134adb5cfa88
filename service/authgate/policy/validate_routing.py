"""Checks of what a policy routes: `spec.hosts`, `spec.pathPrefixes` and `spec.rules`
(each rule on its own, then rules that an earlier rule shadows)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from authgate.errors import TargetError
from authgate.policy.defaults import default_prefix
from authgate.policy.model import PolicySpec, Rule
from authgate.policy.validation import TOKEN_RE, Findings, valid_scope
from authgate.urls import normalize_host, normalize_path, prefix_covers


def check_hosts(spec: PolicySpec, findings: Findings) -> None:
    for index, host in enumerate(spec.hosts or []):
        try:
            normalize_host(host)
        except TargetError as error:
            findings.emit(f"spec.hosts[{index}]", f"invalid host: {error}")
        if "*" in host:
            findings.emit(f"spec.hosts[{index}]", "wildcards are not supported in v1alpha1")


def check_path_prefixes(spec: PolicySpec, findings: Findings) -> list[str]:
    """The policy's normalized path prefixes (the valid ones), for the rule checks."""
    prefixes: list[str] = []
    for index, prefix in enumerate(spec.path_prefixes or []):
        try:
            normalized = normalize_path(prefix)
        except TargetError as error:
            findings.emit(f"spec.pathPrefixes[{index}]", f"invalid path prefix: {error}")
            continue
        if normalized != prefix:
            findings.emit(f"spec.pathPrefixes[{index}]", f"must be in normalized form ({normalized!r})")
        prefixes.append(normalized)
    if not spec.path_prefixes:
        try:
            prefixes = [default_prefix(spec.resource)]
        except TargetError as error:
            findings.emit("spec.resource", f"its path cannot be a prefix: {error}")
    return prefixes


def check_rules(spec: PolicySpec, prefixes: list[str], findings: Findings) -> None:
    normalized = [_check_rule(index, rule, prefixes, findings) for index, rule in enumerate(spec.rules)]
    _check_shadowing(spec.rules, normalized, findings)


def _check_rule(index: int, rule: Rule, prefixes: list[str], findings: Findings) -> str | None:
    """The rule's normalized prefix (None if it has none)."""
    where = f"spec.rules[{index}]"
    try:
        prefix = normalize_path(rule.path_prefix)
    except TargetError as error:
        findings.emit(f"{where}.pathPrefix", f"invalid path prefix: {error}")
        return None
    if prefix != rule.path_prefix:
        findings.emit(f"{where}.pathPrefix", f"must be in normalized form ({prefix!r})")
    if not any(prefix_covers(p, prefix) or prefix_covers(prefix, p) for p in prefixes):
        findings.emit(f"{where}.pathPrefix", "outside every path prefix of the policy: the rule can never match")
    for m_index, method in enumerate(rule.methods or []):
        if not TOKEN_RE.match(method):
            findings.emit(f"{where}.methods[{m_index}]", "not an HTTP method token")
    if rule.anonymous and (rule.require_scopes or rule.require_roles):
        findings.emit(f"{where}.anonymous", "an anonymous rule cannot require scopes or roles")
    for s_index, scope in enumerate(rule.require_scopes):
        if not valid_scope(scope):
            findings.emit(f"{where}.requireScopes[{s_index}]", "not a valid scope token (RFC 6749 §3.3)")
    return prefix


def _check_shadowing(rules: list[Rule], normalized: list[str | None], findings: Findings) -> None:
    """First match decides: a rule whose every request an earlier rule takes can never match."""
    for later_index, later in enumerate(rules):
        later_prefix = normalized[later_index]
        if later_prefix is None:
            continue
        for earlier_index in range(later_index):
            earlier = rules[earlier_index]
            earlier_prefix = normalized[earlier_index]
            if earlier_prefix is None or not prefix_covers(earlier_prefix, later_prefix):
                continue
            if (
                _covers_all(_upper(earlier.methods), _upper(later.methods))
                and _covers_all(_frozen(earlier.mcp_methods), _frozen(later.mcp_methods))
                and _names_cover(earlier.mcp_names, later.mcp_names)
            ):
                findings.emit(
                    f"spec.rules[{later_index}]",
                    f"shadowed by spec.rules[{earlier_index}] (its prefix, methods and MCP "
                    "matchers cover this rule, which can therefore never match)",
                )
                break


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

    def covered(pattern: str) -> bool:
        if pattern in earlier:
            return True
        literal = not any(c in pattern for c in "*?[")
        return literal and any(fnmatchcase(pattern, e) for e in earlier)

    return all(covered(p) for p in later)


def _upper(values: list[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(v.upper() for v in values)


def _frozen(values: list[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)
