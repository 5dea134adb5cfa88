"""Redirect URIs a facade client may register and use.

- https: any host, matched exactly (OAuth 2.1 §2.3.1);
- http: only loopback (127.0.0.1, [::1], localhost) for native apps, where any port
  matches the registered one (RFC 8252 §7.3), with policy `redirectUris: loopback-any-port`;
- never a fragment, userinfo, or another scheme (javascript:, data:, file:, private-use).
"""

from __future__ import annotations

from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})
MAX_URI_LENGTH = 2000


class RedirectError(ValueError):
    """Why a redirect URI is refused; the text goes to the client as error_description."""


def _netloc_host(netloc: str) -> str:
    host = netloc.rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[: host.find("]") + 1].lower()
    return host.split(":", 1)[0].lower()


def check_redirect_uri(uri: str) -> None:
    """Raise RedirectError unless `uri` may be registered."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_LENGTH:
        raise RedirectError("redirect_uri must be a non-empty string")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in uri):
        raise RedirectError("redirect_uri contains spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise RedirectError("redirect_uri is not a valid URL") from None
    if "#" in uri:
        raise RedirectError("redirect_uri must not contain a fragment")
    if parts.username is not None or parts.password is not None:
        raise RedirectError("redirect_uri must not contain user information")
    scheme = parts.scheme.lower()
    if scheme == "https":
        if not parts.hostname:
            raise RedirectError("redirect_uri needs a host")
        return
    if scheme == "http":
        if _netloc_host(parts.netloc) not in LOOPBACK_HOSTS:
            raise RedirectError("http redirect_uris are allowed only on 127.0.0.1, [::1] or localhost")
        return
    raise RedirectError(f"redirect_uri scheme {scheme or '(none)'!r} is not allowed; use https or http on loopback")


def is_loopback(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme.lower() == "http" and _netloc_host(parts.netloc) in LOOPBACK_HOSTS


def redirect_matches(registered: str, presented: str, mode: str = "loopback-any-port") -> bool:
    """Does the presented redirect_uri match a registered one? Exact string match, except
    that for loopback http in `loopback-any-port` mode the port may differ (RFC 8252 §7.3)."""
    if registered == presented:
        return True
    try:  # what could never be registered (a fragment, even empty; user information) never matches
        check_redirect_uri(presented)
    except RedirectError:
        return False
    if mode != "loopback-any-port" or not (is_loopback(registered) and is_loopback(presented)):
        return False
    a, b = urlsplit(registered), urlsplit(presented)
    return (
        a.scheme.lower() == b.scheme.lower()
        and _netloc_host(a.netloc) == _netloc_host(b.netloc)
        and a.path == b.path
        and a.query == b.query
    )
