"""Normalization of the request target: host and path, as DESIGN.md "Matching semantics" says.

The same functions normalize policy hosts/prefixes at compile time and request
targets at check time, so the two can only ever be compared in one canonical form.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": "80", "https": "443"}

# RFC 3986 reg-name (ASCII; IDNs arrive as punycode) or an IPv4 literal; IPv6 in brackets.
_HOST_RE = re.compile(r"^(?:[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?)*$")
_IPV6_RE = re.compile(r"^\[[0-9a-f:.]+\]$")
_PORT_RE = re.compile(r"^[0-9]{1,5}$")
_PCT_RE = re.compile(r"%(..)?")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_FORBIDDEN_ENCODED = frozenset({0x2F, 0x5C})  # %2F and %5C would change segment boundaries
# Characters a request path may hold raw (RFC 3986 pchar + "/"); anything else is refused.
_NOT_PATH_CHAR = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]")


class TargetError(ValueError):
    """The request target cannot be normalized; the caller answers 400."""


def normalize_host(host: str, scheme: str | None = "https") -> str:
    """Lowercase, drop a trailing dot and the scheme's default port; refuse anything odd.

    With scheme None (a dialect that does not tell it), both 80 and 443 count as default.
    """
    value = host.strip().lower()
    if not value or len(value) > 300:
        raise TargetError("empty or oversized host")
    port = ""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise TargetError("unterminated IPv6 literal")
        name, rest = value[: end + 1], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise TargetError("garbage after IPv6 literal")
            port = rest[1:]
        if not _IPV6_RE.match(name):
            raise TargetError("invalid IPv6 literal")
    else:
        name, sep, port = value.partition(":")
        if sep and not port:
            raise TargetError("empty port")
        if name.endswith("."):
            name = name[:-1]
        if not _HOST_RE.match(name):
            raise TargetError("invalid host name")
    if port:
        if not _PORT_RE.match(port) or not 0 < int(port) < 65536:
            raise TargetError("invalid port")
        port = str(int(port))
        if (DEFAULT_PORTS.get(scheme) == port) if scheme else port in ("80", "443"):
            port = ""
    return f"{name}:{port}" if port else name


def _decode_unreserved(path: str) -> str:
    """Decode %XX of unreserved characters, uppercase the rest, refuse %2F, %5C and controls."""

    def replace(match: re.Match[str]) -> str:
        hex_digits = match.group(1)
        if hex_digits is None:
            raise TargetError("truncated percent-encoding")
        try:
            octet = int(hex_digits, 16)
        except ValueError:
            raise TargetError("invalid percent-encoding") from None
        if octet in _FORBIDDEN_ENCODED:
            raise TargetError("encoded slash or backslash in path")
        if octet < 0x20 or octet == 0x7F:
            raise TargetError("encoded control character in path")
        if octet in _UNRESERVED:
            return chr(octet)
        return "%" + hex_digits.upper()

    return _PCT_RE.sub(replace, path) if "%" in path else path


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, on an absolute path whose empty segments were already merged."""
    output: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if output:
                output.pop()
            if last:
                output.append("")
        elif segment == ".":
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/" + "/".join(output)


def normalize_path(raw: str) -> str:
    """Canonical form of a request path: the only form rules and policies are matched against.

    Query and fragment are dropped; runs of "/" merge (as nginx's merge_slashes does, so
    `//admin` cannot slip past a rule for `/admin`); dot-segments are resolved.
    """
    path = raw.split("#", 1)[0].split("?", 1)[0]
    if not path.startswith("/"):
        raise TargetError("path must start with /")
    if len(path) > 8192:
        raise TargetError("path too long")
    if _NOT_PATH_CHAR.search(path):
        raise TargetError("character not allowed in path")
    path = _decode_unreserved(path)
    if "//" in path:
        path = re.sub(r"/{2,}", "/", path)
    if "." in path:
        path = remove_dot_segments(path)
    return path


def prefix_covers(prefix: str, path: str) -> bool:
    """Segment-boundary prefix match: `/mcp` covers `/mcp`, `/mcp/` and `/mcp/x`, never `/mcpx`."""
    if prefix == "/":
        return True
    if not path.startswith(prefix):
        return False
    return len(path) == len(prefix) or path[len(prefix)] == "/" or prefix.endswith("/")


def split_absolute_url(url: str) -> tuple[str, str, str]:
    """(scheme, normalized host, normalized path) of an absolute http(s) URL; TargetError otherwise."""
    if len(url) > 8192:
        raise TargetError("URL too long")
    if not (url.isascii() and url.isprintable()) or " " in url:
        raise TargetError("control, space or non-ASCII character in URL")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise TargetError("unparsable URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.netloc:
        raise TargetError("URL must be absolute http or https")
    if "@" in parts.netloc:
        raise TargetError("userinfo in URL")
    host = normalize_host(parts.netloc, scheme)
    path = normalize_path(parts.path or "/")
    return scheme, host, path
