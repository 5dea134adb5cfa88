"""Normalization of URLs, hosts and paths, as DESIGN.md "Matching semantics" says.

The same functions normalize policy hosts/prefixes at compile time and request
targets at check time, so the two can only ever be compared in one canonical form.
`parse_url` is the one parser of every URL authgate reads (policy URLs, redirect URIs,
client metadata document URLs, outbound calls, `X-Original-URL`): strict RFC 3986
authority syntax, so no two parsers (ours, a browser's, httpx's) can see different hosts
in one URL. Hand-written because urllib.parse is lenient by design (`[::1].evil` has
hostname `::1`) and WHATWG parsers take `127.1` or `0x7f.1` for IPv4 addresses.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

from authgate.errors import TargetError

DEFAULT_PORTS = {"http": "80", "https": "443"}

# RFC 3986 reg-name (ASCII; IDNs arrive as punycode) or an IPv4 literal; IPv6 in brackets.
_HOST_RE = re.compile(r"^(?:[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?)*$")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE = re.compile(rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$")
# A last label a WHATWG parser reads as a number (RFC 3986 would not): decimal, 0x hex, octal.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
_PORT_RE = re.compile(r"^[0-9]{1,5}$")
_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*$")
_PCT_RE = re.compile(r"%(..)?")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# %2F and %5C would change segment boundaries; %25 would let a backend that decodes twice
# see another path than the one matched.
_FORBIDDEN_ENCODED = {0x2F: "encoded slash or backslash", 0x5C: "encoded slash or backslash", 0x25: "encoded %"}
# Characters a request path may hold raw (RFC 3986 pchar + "/", less ";"); anything else is refused.
_NOT_PATH_CHAR = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,=:@/%]")


def normalize_host(host: str, scheme: str | None = "https") -> str:
    """Lowercase, drop a trailing dot and the scheme's default port; refuse anything odd.

    With scheme None (a dialect that does not tell it), both 80 and 443 count as default.
    IPv6 literals come out bracketed and in their compressed form (`[::1]`).
    """
    value = host.strip().lower()
    if not value or len(value) > 300:
        raise TargetError("empty or oversized host")
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise TargetError("unterminated IPv6 literal")
        name, rest = _ipv6_literal(value[1:end]), value[end + 1 :]
        if rest and not rest.startswith(":"):
            raise TargetError("garbage after IPv6 literal")
        port = rest[1:] if rest else None
    else:
        name, sep, port_text = value.partition(":")
        port = port_text if sep else None
        if name.endswith("."):
            name = name[:-1]
        if not _HOST_RE.match(name):
            raise TargetError("invalid host name")
        if _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]) and not _IPV4_RE.match(name):
            raise TargetError("a numeric host must be a dotted-quad IPv4 address")
    if port is None:
        return name
    if not _PORT_RE.match(port) or not 0 < int(port) < 65536:
        raise TargetError("invalid port")
    port = str(int(port))
    if (DEFAULT_PORTS.get(scheme) == port) if scheme else port in ("80", "443"):
        return name
    return f"{name}:{port}"


def _ipv6_literal(text: str) -> str:
    """`[...]` of a valid IPv6 address without a zone (RFC 6874 zones are refused), compressed."""
    if not text or not all(c in "0123456789abcdef:." for c in text):
        raise TargetError("invalid IPv6 literal")
    try:
        return f"[{ipaddress.IPv6Address(text).compressed}]"
    except ValueError:
        raise TargetError("invalid IPv6 literal") from None


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
            raise TargetError(f"{_FORBIDDEN_ENCODED[octet]} in path")
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
        # ";" too: Tomcat, Jetty and Spring strip path parameters, so `/admin;x` would
        # reach `/admin` while matching as a segment of its own.
        raise TargetError("';' in path" if ";" in path else "character not allowed in path")
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


@dataclass(frozen=True, slots=True)
class URL:
    """An absolute URL as `parse_url` read it; `host` is normalized (`normalize_host`)."""

    scheme: str  # lowercase
    host: str  # with a non-default port, e.g. "idp.example.com:8443" or "[::1]:9000"
    path: str  # as written ("" when absent); not normalized
    query: str | None  # without "?"; None when there is no "?"
    fragment: str | None
    userinfo: bool  # "user@" or "user:pass@" before the host

    @property
    def hostname(self) -> str:
        """The host without its port (IPv6 still bracketed)."""
        return self.host[: self.host.index("]") + 1] if self.host.startswith("[") else self.host.split(":", 1)[0]

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}"


def parse_url(value: str, max_length: int = 8192) -> URL:
    """Parse an absolute `scheme://authority...` URL strictly; TargetError otherwise.

    Refused: controls, spaces, non-ASCII and backslashes anywhere (a WHATWG parser reads
    `\\` as `/`), an empty or malformed host, anything after an IPv6 literal but a port,
    numeric host forms other than dotted-quad IPv4, IPv6 zones.
    """
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise TargetError("empty or oversized URL")
    if not (value.isascii() and value.isprintable()) or " " in value or "\\" in value:
        raise TargetError("control, space, backslash or non-ASCII character in URL")
    scheme, sep, rest = value.partition("://")
    if not sep or not _SCHEME_RE.match(scheme.lower()):
        raise TargetError("URL must be absolute (scheme://host)")
    scheme = scheme.lower()
    rest, hash_sign, fragment = rest.partition("#")
    rest, question_mark, query = rest.partition("?")
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    userinfo, at, hostport = authority.rpartition("@")
    if at and "@" in userinfo:
        raise TargetError("more than one @ in the URL's authority")
    return URL(
        scheme=scheme,
        host=normalize_host(hostport, scheme),
        path=path,
        query=query if question_mark else None,
        fragment=fragment if hash_sign else None,
        userinfo=bool(at),
    )


@functools.lru_cache(maxsize=32_768)
def parse_config_url(value: str) -> URL:
    """`parse_url` for configuration: a compile reads each policy's URLs several times
    (validation, defaults, ownership, compilation) and policies repeat the same issuer and
    JWKS URLs thousands of times, so a snapshot parses each URL once. Bounded (about 6 MB
    when full; sized for the URLs of 10,000 policies); for policy input only, never for
    request input (whose URLs an attacker picks)."""
    return parse_url(value)


def split_absolute_url(url: str) -> tuple[str, str, str]:
    """(scheme, normalized host, normalized path) of an absolute http(s) URL; TargetError otherwise."""
    parsed = parse_url(url)
    if parsed.scheme not in DEFAULT_PORTS:
        raise TargetError("URL must be absolute http or https")
    if parsed.userinfo:
        raise TargetError("userinfo in URL")
    return parsed.scheme, parsed.host, normalize_path(parsed.path or "/")
