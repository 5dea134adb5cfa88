"""The decision cache never changes an answer: the check port with it and without it,
over random requests (hypothesis), with real tokens and a real key set on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.infra.keys import claims

from authgate import metrics
from authgate.outbound.egress import EgressPolicy
from authgate.policy import ValidationSettings, compile_document
from authgate.server.check_app import CheckApp
from authgate.server.decision_cache import DecisionCache
from authgate.server.service import AuthService, ServiceSettings

RESOURCE = "https://api.example.com/mcp"
LOCAL = EgressPolicy(allow=("127.0.0.1",), insecure_http=True)


def snapshot(issuer_url: str, generation: int = 1, scope: str = "mcp:read"):
    policy = {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": "api", "namespace": "default"},
        "spec": {
            "resource": RESOURCE,
            "issuers": [{"issuer": issuer_url}],
            "scopeRoles": [{"scope": "mcp:admin", "role": "admin"}],
            "cors": {"allowedOrigins": ["https://app.example.com"]},
            "rules": [
                {"pathPrefix": "/mcp/health", "anonymous": True},
                {
                    "pathPrefix": "/mcp",
                    "mcpMethods": ["tools/call"],
                    "mcpNames": ["admin_*"],
                    "requireRoles": ["admin"],
                },
                {"pathPrefix": "/mcp", "requireScopes": [scope]},
            ],
        },
    }
    document = {"formatVersion": 1, "generation": generation, "policies": [policy], "secrets": []}
    return compile_document(document, ValidationSettings(insecure_http=True))


async def call(app: CheckApp, dialect: str, method: str, path: str, headers: dict[str, str]):
    if dialect == "nginx":
        raw, sent = (
            b"/ext-authz/nginx",
            {"x-original-url": f"https://api.example.com{path}", "x-original-method": method},
        )
        method = "GET"
    elif dialect == "traefik":
        raw = b"/ext-authz/traefik"
        sent = {
            "x-forwarded-proto": "https",
            "x-forwarded-host": "api.example.com",
            "x-forwarded-uri": path,
            "x-forwarded-method": method,
        }
        method = "GET"
    else:
        raw, sent = b"/ext-authz/envoy" + path.encode(), {"host": "api.example.com"}
    scope = {
        "type": "http",
        "method": method,
        "path": raw.decode(),
        "raw_path": raw,
        "headers": [(k.encode(), v.encode()) for k, v in {**sent, **headers}.items()],
    }
    messages = []

    async def send(message):
        messages.append(message)

    await app(scope, None, send)
    start, body = messages
    headers = [(k, v) for k, v in start["headers"] if k != b"x-request-id"]
    return start["status"], headers, body["body"]


@pytest.fixture(scope="module")
def loop():
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture(scope="module")
def apps(issuer, loop):
    """(cached, uncached): two check apps of two services enforcing one snapshot."""
    services = [AuthService(ServiceSettings(egress=LOCAL, decision_cache_entries=n)) for n in (1000, 0)]
    for service in services:
        service.load(snapshot(issuer.issuer))
    yield [CheckApp(service) for service in services]
    for service in services:
        loop.run(service.stop())


TOKENS = {}


@pytest.fixture(scope="module")
def tokens(signing_keys, issuer):
    key = signing_keys["ES256"]
    now = int(time.time())
    made = {
        "none": None,
        "reader": key.sign(claims(issuer.issuer, RESOURCE, scope="mcp:read")),
        "admin": key.sign(claims(issuer.issuer, RESOURCE, scope="mcp:read mcp:admin")),
        "no-scope": key.sign(claims(issuer.issuer, RESOURCE, scope="openid")),
        "expired": key.sign(claims(issuer.issuer, RESOURCE, scope="mcp:read", exp=now - 600, iat=now - 900)),
        "other-audience": key.sign(claims(issuer.issuer, "https://other.example.com", scope="mcp:read")),
        "garbage": "not.a.token",
    }
    return made


REQUESTS = st.fixed_dictionaries(
    {
        "dialect": st.sampled_from(["nginx", "traefik", "envoy"]),
        "method": st.sampled_from(["GET", "POST", "OPTIONS", "DELETE"]),
        "path": st.sampled_from(["/mcp", "/mcp/tools", "/mcp/health", "/mcp/health/x", "/other", "/mcp/../x"]),
        "token": st.sampled_from(["none", "reader", "admin", "no-scope", "expired", "other-audience", "garbage"]),
        "mcp": st.sampled_from([None, ("tools/call", "admin_drop"), ("tools/call", "search"), ("tools/list", None)]),
        "origin": st.sampled_from([None, "https://app.example.com", "https://evil.example"]),
        "preflight": st.booleans(),
        "request_id": st.sampled_from([None, "req-1", "req-2"]),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=REQUESTS)
def test_cached_and_uncached_answers_are_identical(apps, tokens, loop, request):
    cached, uncached = apps
    headers: dict[str, str] = {}
    if tokens[request["token"]] is not None:
        headers["authorization"] = f"Bearer {tokens[request['token']]}"
    if request["mcp"] is not None:
        headers["mcp-method"] = request["mcp"][0]
        if request["mcp"][1] is not None:
            headers["mcp-name"] = request["mcp"][1]
    if request["origin"] is not None:
        headers["origin"] = request["origin"]
    if request["preflight"]:
        headers["access-control-request-method"] = "POST"
    if request["request_id"] is not None:
        headers["x-request-id"] = request["request_id"]
    args = (request["dialect"], request["method"], request["path"], headers)
    expected = loop.run(call(uncached, *args))
    first = loop.run(call(cached, *args))
    second = loop.run(call(cached, *args))  # decided again, and kept when cacheable (admitted)
    third = loop.run(call(cached, *args))  # from the cache when the answer is cacheable
    assert first == expected
    assert second == expected
    assert third == expected


def test_an_allow_is_answered_from_the_cache_and_dies_with_the_snapshot(apps, tokens, loop, issuer):
    cached = apps[0]
    service = cached.service
    counts = metrics.cache_counts("decision")
    args = ("envoy", "GET", "/mcp/tools", {"authorization": f"Bearer {tokens['reader']}"})
    service.answers.clear()
    assert loop.run(call(cached, *args))[0] == 200
    assert len(service.answers) == 0  # decided once: not kept (admitted the second time)
    assert loop.run(call(cached, *args))[0] == 200
    assert len(service.answers) == 1
    hits = counts[metrics.HIT]
    assert loop.run(call(cached, *args))[0] == 200
    assert counts[metrics.HIT] == hits + 1

    service.load(snapshot(issuer.issuer, generation=service.snapshot.generation + 1, scope="mcp:write"))
    try:
        assert loop.run(call(cached, *args))[0] == 403  # decided again under the new policy
    finally:
        service.load(snapshot(issuer.issuer, generation=service.snapshot.generation + 1))


def test_dpop_requests_are_never_cached(apps, tokens, loop):
    cached = apps[0]
    args = ("envoy", "GET", "/mcp/tools", {"authorization": f"Bearer {tokens['reader']}", "dpop": "a.b.c"})
    before = len(cached.service.answers)
    loop.run(call(cached, *args))
    assert len(cached.service.answers) == before


def test_an_entry_of_an_issuer_that_failed_closed_is_decided_again(apps, tokens, loop, monkeypatch):
    cached = apps[0]
    counts = metrics.cache_counts("decision")
    args = ("nginx", "GET", "/mcp/tools", {"authorization": f"Bearer {tokens['admin']}"})
    assert loop.run(call(cached, *args))[0] == 200
    assert loop.run(call(cached, *args))[0] == 200  # admitted
    assert loop.run(call(cached, *args))[0] == 200  # a hit
    dropped = counts[metrics.EXPIRED]
    monkeypatch.setattr(cached.service.keys, "usable", lambda source: False)
    loop.run(call(cached, *args))
    assert counts[metrics.EXPIRED] == dropped + 1  # not served from the cache: decided again


def test_the_doorkeeper_admits_a_key_the_second_time_it_is_decided_and_stays_bounded():
    cache = DecisionCache(keys=None, max_entries=4)
    assert not cache.admit(("envoy", b"/mcp", "GET", ()))  # decided once: not kept
    assert cache.admit(("envoy", b"/mcp", "GET", ()))  # twice: kept
    assert not cache.admit(("envoy", b"/mcp", "GET", ()))  # (once admitted, it starts over)
    for index in range(10):
        cache.admit(("envoy", b"/mcp", "GET", (("authorization", f"Bearer {index}"),)))
    assert len(cache._seen) <= 4
