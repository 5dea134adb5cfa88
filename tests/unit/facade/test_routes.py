"""Which facade endpoint a path names, and what the dispatch table lets through."""

import pytest

from authgate.facade.routes import ENDPOINTS, endpoint_name
from authgate.policy.snapshot import CompiledFacade, CompiledUpstream

UPSTREAM = CompiledUpstream("https://idp.example.com", None, None, None, None, "authgate", None, ("openid",))


def facade(path: str) -> CompiledFacade:
    issuer = "https://mcp.example.com" + path
    return CompiledFacade(issuer, "mcp.example.com", path, UPSTREAM, "always", "loopback-any-port", True, True)


@pytest.mark.parametrize(
    ("base", "path", "expected"),
    [
        ("", "/.well-known/oauth-authorization-server", "metadata"),
        ("", "/.well-known/openid-configuration", "metadata"),
        ("/p", "/.well-known/oauth-authorization-server/p", "metadata"),
        ("/p", "/.well-known/openid-configuration/p", "metadata"),
        ("/p", "/p/.well-known/openid-configuration", "metadata"),
        ("", "/oauth2/token", "token"),
        ("/p", "/p/oauth2/authorize", "authorize"),
        ("/p", "/oauth2/token", None),  # not under the issuer's path
        ("", "/oauth2/metadata", None),  # metadata lives at its well-known locations only
        ("", "/oauth2/userinfo", None),
        ("", "/oauth2/token/", None),
    ],
)
def test_a_path_names_an_endpoint_under_the_facade_issuer(base, path, expected):
    assert endpoint_name(facade(base), path) == expected


def test_browser_endpoints_answer_with_pages_and_no_cors_preflight():
    assert {name for name, endpoint in ENDPOINTS.items() if endpoint.page} == {"authorize", "callback"}
    assert {name for name, endpoint in ENDPOINTS.items() if not endpoint.preflight} == {"authorize", "callback"}


def test_only_the_metadata_is_served_without_sealing_keys():
    assert [name for name, endpoint in ENDPOINTS.items() if not endpoint.needs_keys] == ["metadata"]


def test_each_endpoint_answers_its_methods_only():
    methods = {name: set(endpoint.handlers) for name, endpoint in ENDPOINTS.items()}
    assert methods == {
        "metadata": {"GET"},
        "register": {"POST"},
        "authorize": {"GET", "POST"},
        "callback": {"GET"},
        "token": {"POST"},
        "introspect": {"POST"},
        "revoke": {"POST"},
    }
