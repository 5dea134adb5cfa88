"""Conflicts between (individually valid) policies: who owns a host, a (host, prefix)
pair, a facade issuer. The oldest claim wins."""

from __future__ import annotations

from authgate.errors import PolicyIssue
from authgate.policy.defaults import effective_hosts, effective_prefixes, facade_issuer
from authgate.policy.loader import PolicySource


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
