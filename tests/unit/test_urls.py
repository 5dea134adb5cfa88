"""Host and path normalization: the only form policies and requests are compared in."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authgate.errors import TargetError
from authgate.urls import normalize_host, normalize_path, parse_url, prefix_covers, split_absolute_url


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/mcp", "/mcp"),
        ("/mcp/health/../admin", "/mcp/admin"),
        ("/mcp/%2e%2e/admin", "/admin"),
        ("/mcp/%2E%2e/admin", "/admin"),
        ("/mcp/./tools", "/mcp/tools"),
        ("/mcp//admin", "/mcp/admin"),
        ("//mcp", "/mcp"),
        ("/../../etc", "/etc"),
        ("/mcp/..", "/"),
        ("/mcp?x=1#frag", "/mcp"),
        ("/%6Dcp", "/mcp"),  # unreserved characters are decoded
        ("/a%7e", "/a~"),
        ("/a%20b", "/a%20b"),  # reserved/other encodings stay, uppercased
        ("/a%c3%a9", "/a%C3%A9"),
    ],
)
def test_paths_are_normalized(raw, expected):
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        *("/mcp%2Fadmin", "/mcp%2fadmin", "/mcp%5Cadmin", "/mcp%00", "/mcp%0a", "/a%", "/a%zz", "mcp", "/a\\b", "/a b"),
        # ambiguous for backends: path parameters, and a percent sign decoded twice
        *("/mcp/admin;x", "/mcp/health/..;/admin", "/mcp;/admin", "/mcp/%25", "/mcp/%252e%252e/admin", "/%252F"),
    ],
)
def test_dangerous_paths_are_refused(raw):
    with pytest.raises(TargetError):
        normalize_path(raw)


@pytest.mark.parametrize(
    ("host", "scheme", "expected"),
    [
        ("MCP.Example.COM", "https", "mcp.example.com"),
        ("mcp.example.com.", "https", "mcp.example.com"),
        ("mcp.example.com:443", "https", "mcp.example.com"),
        ("mcp.example.com:80", "http", "mcp.example.com"),
        ("mcp.example.com:80", "https", "mcp.example.com:80"),
        ("mcp.example.com:8443", "https", "mcp.example.com:8443"),
        ("mcp.example.com:443", None, "mcp.example.com"),
        ("[::1]:443", "https", "[::1]"),
        ("127.0.0.1:8080", "http", "127.0.0.1:8080"),
    ],
)
def test_hosts_are_normalized(host, scheme, expected):
    assert normalize_host(host, scheme) == expected


@pytest.mark.parametrize("host", ["", "a b", "evil.com/x", "x:", "x:99999", "[::1", "ex@mple.com", "é.example"])
def test_bad_hosts_are_refused(host):
    with pytest.raises(TargetError):
        normalize_host(host)


@pytest.mark.parametrize(
    ("prefix", "path", "covered"),
    [
        ("/mcp", "/mcp", True),
        ("/mcp", "/mcp/", True),
        ("/mcp", "/mcp/x", True),
        ("/mcp", "/mcpx", False),
        ("/mcp/", "/mcp/x", True),
        ("/mcp/", "/mcp", False),
        ("/", "/anything", True),
        ("/MCP", "/mcp", False),  # case-sensitive
    ],
)
def test_prefixes_match_on_segment_boundaries(prefix, path, covered):
    assert prefix_covers(prefix, path) is covered


def test_absolute_url_is_split_and_normalized():
    assert split_absolute_url("HTTPS://MCP.example.com:443/mcp/./x?q") == ("https", "mcp.example.com", "/mcp/x")
    for bad in ["/mcp", "mcp.example.com/mcp", "ftp://x/y", "https://user@x/y", "https://x/\x00", "https:///x"]:
        with pytest.raises(TargetError):
            split_absolute_url(bad)


@given(st.text(max_size=200))
def test_normalize_path_never_fails_unexpectedly(raw):
    try:
        result = normalize_path(raw)
    except TargetError:
        return
    assert result.startswith("/")
    assert "/../" not in result and not result.endswith("/..") and "//" not in result
    assert normalize_path(result) == result  # idempotent


@given(st.text(max_size=100), st.sampled_from(["http", "https", None]))
def test_normalize_host_never_fails_unexpectedly(raw, scheme):
    try:
        result = normalize_host(raw, scheme)
    except TargetError:
        return
    assert result == result.lower() and not result.endswith(".")


# Every URL authgate reads goes through parse_url: (url, host it names) or (url, None) for refused.
HOSTILE_URLS = [
    ("http://[::1].evil.example/cb", None),  # urllib's hostname would say "::1"
    ("http://[::1]evil.example/cb", None),
    ("http://[::1]@evil.example/cb", "evil.example"),  # userinfo "[::1]": callers refuse userinfo
    ("http://127.0.0.1.evil.example/cb", "127.0.0.1.evil.example"),
    ("http://127.1/cb", None),  # WHATWG and inet_aton read these as 127.0.0.1
    ("http://2130706433/cb", None),
    ("http://0x7f.0.0.1/cb", None),
    ("http://0177.0.0.1/cb", None),
    ("http://127.000.000.001/cb", None),
    ("http://evil.example\\@127.0.0.1/cb", None),  # WHATWG reads the backslash as "/"
    ("http://evil.example\\.trusted.example/", None),
    ("https://a@b@evil.example/", None),
    ("https://[fe80::1%25eth0]/", None),  # zone identifiers
    ("https://[::ffff:127.0.0.1]/", "[::ffff:7f00:1]"),  # valid IPv6, compressed; egress screens it
    ("https://[0:0:0:0:0:0:0:1]:8443/x", "[::1]:8443"),
    ("https://[::1/", None),
    ("https://[xyz]/", None),
    ("https:///path", None),
    ("https://:443/", None),
    ("https://host:0/", None),
    ("https://host:65536/", None),
    ("https://host:-1/", None),
    ("https://ho st/", None),
    ("https://host\t/", None),
    ("https://hóst.example/", None),
    ("https://host..example/", None),
    ("https://-host.example/", None),
    ("https://host.example:443/", "host.example"),
    ("HTTPS://Host.Example./x", "host.example"),
    ("//host.example/x", None),
    ("javascript:alert(1)", None),
]


@pytest.mark.parametrize(("url", "host"), HOSTILE_URLS)
def test_one_strict_parser_for_every_url(url, host):
    if host is None:
        with pytest.raises(TargetError):
            parse_url(url)
    else:
        assert parse_url(url).host == host


def test_parse_url_keeps_what_callers_check():
    parsed = parse_url("https://user@Idp.Example.com:8443/realms/x?a=b#frag")
    assert (parsed.scheme, parsed.host, parsed.hostname) == ("https", "idp.example.com:8443", "idp.example.com")
    assert (parsed.path, parsed.query, parsed.fragment, parsed.userinfo) == ("/realms/x", "a=b", "frag", True)
    assert parsed.origin == "https://idp.example.com:8443"
    empty = parse_url("https://idp.example.com#")
    assert (empty.path, empty.query, empty.fragment) == ("", None, "")


@given(st.text(max_size=80))
def test_parse_url_never_fails_unexpectedly(raw):
    try:
        parse_url("https://" + raw)
    except TargetError:
        pass
