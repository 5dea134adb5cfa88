"""Identity headers handed upstream on allow, built from a verified token.

A value is emitted only when it is printable ASCII: a claim carrying control
characters (header injection) or non-ASCII text is left out, never mangled.
"""

from __future__ import annotations

from typing import Any

from authgate.check.roles import claim_at
from authgate.check.tokens.validator import VerifiedToken
from authgate.policy.snapshot import CompiledPolicy


def header_value(value: Any) -> str | None:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int | float):
        text = str(value)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        text = ",".join(value)
    else:
        return None
    if not text or len(text) > 4096 or not text.isascii() or not text.isprintable():
        return None
    return text


def identity_headers(
    policy: CompiledPolicy, token: VerifiedToken | None, roles: frozenset[str]
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """(headers to set, header names to remove): together they cover every identity header."""
    names = policy.identity_headers
    if token is None:
        return (), names.all
    values: list[tuple[str, Any]] = [
        (names.subject, token.subject),
        (names.roles, ",".join(sorted(roles))),
        (names.scopes, " ".join(sorted(token.scopes))),
        (names.issuer, token.issuer.issuer),
        (names.client_id, token.client_id),
    ]
    values.extend((header, claim_at(token.claims, path)) for path, header in names.claims)
    set_headers: list[tuple[str, str]] = []
    remove: list[str] = []
    for name, raw in values:
        text = header_value(raw) if raw is not None else None
        if text is None:
            remove.append(name)
        else:
            set_headers.append((name, text))
    return tuple(set_headers), tuple(remove)
