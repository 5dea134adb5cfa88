"""Authorization-server metadata: where it is published for an issuer.

OpenID Connect Discovery §4 (appended to the issuer) first, then RFC 8414 §3.1 (inserted).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def discovery_urls(issuer: str) -> list[str]:
    """OpenID Connect Discovery §4 (appended), then RFC 8414 §3.1 (inserted)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    appended = urlunsplit((parts.scheme, parts.netloc, path + "/.well-known/openid-configuration", "", ""))
    inserted = urlunsplit((parts.scheme, parts.netloc, "/.well-known/oauth-authorization-server" + path, "", ""))
    return [appended, inserted]
