"""Redirect URIs a facade client may register and use.

- https: any host, matched exactly (OAuth 2.1 §2.3.1);
- http: only loopback (127.0.0.1, [::1], localhost) for native apps, where any port
  matches the registered one (RFC 8252 §7.3), with policy `redirectUris: loopback-any-port`;
- never a fragment, userinfo, or another scheme (javascript:, data:, file:, private-use).
"""

from __future__ import annotations

from authgate.errors import RedirectError, TargetError
from authgate.urls import URL, parse_url

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})
MAX_URI_LENGTH = 2000


def _parsed(uri: str) -> URL:
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_LENGTH:
        raise RedirectError("redirect_uri must be a non-empty string")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in uri):
        raise RedirectError("redirect_uri contains spaces, control or non-ASCII characters")
    try:
        return parse_url(uri, MAX_URI_LENGTH)
    except TargetError as error:
        raise RedirectError(f"redirect_uri is not a valid URL ({error})") from None


def check_redirect_uri(uri: str) -> None:
    """Raise RedirectError unless `uri` may be registered."""
    parts = _parsed(uri)
    if parts.fragment is not None:
        raise RedirectError("redirect_uri must not contain a fragment")
    if parts.userinfo:
        raise RedirectError("redirect_uri must not contain user information")
    if parts.scheme == "https":
        return
    if parts.scheme == "http":
        if parts.hostname not in LOOPBACK_HOSTS:
            raise RedirectError("http redirect_uris are allowed only on 127.0.0.1, [::1] or localhost")
        return
    raise RedirectError(f"redirect_uri scheme {parts.scheme!r} is not allowed; use https or http on loopback")


def _loopback(uri: str) -> URL | None:
    try:
        parts = _parsed(uri)
    except RedirectError:
        return None
    return parts if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS else None


def is_loopback(uri: str) -> bool:
    return _loopback(uri) is not None


def redirect_matches(registered: str, presented: str, mode: str = "loopback-any-port") -> bool:
    """Does the presented redirect_uri match a registered one? Exact string match, except
    that for loopback http in `loopback-any-port` mode the port may differ (RFC 8252 §7.3)."""
    if registered == presented:
        return True
    try:  # what could never be registered (a fragment, even empty; user information) never matches
        check_redirect_uri(presented)
    except RedirectError:
        return False
    if mode != "loopback-any-port":
        return False
    a, b = _loopback(registered), _loopback(presented)
    return a is not None and b is not None and (a.hostname, a.path, a.query) == (b.hostname, b.path, b.query)
