"""Untrusted input through the real server's ports: each answer is the port's normal bad-input
answer, the state is unchanged, and the log holds no traceback and no token (the
log is checked with assert_clean_log when the module ends)."""

from __future__ import annotations

import json

import httpx
import pytest
import yaml
from tests.integration.test_service import RESOURCE, policy
from tests.support.authgate import LOCAL_EGRESS, Authgate
from tests.support.leaks import assert_clean_log


@pytest.fixture(scope="module")
def service(tmp_path_factory, issuer):
    instance = Authgate(tmp_path_factory.mktemp("untrusted"), yaml.safe_dump(policy(issuer.issuer)), list(LOCAL_EGRESS))
    instance.start()
    yield instance
    instance.stop()
    assert_clean_log(instance.log(), "the service log")


def _pushes(service: Authgate, result: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics").text
    prefix = f'authgate_snapshot_pushes_total{{result="{result}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


def _snapshot(issuer_url: str, generation: int) -> dict:
    return {"formatVersion": 1, "generation": generation, "policies": [policy(issuer_url)], "secrets": []}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"formatVersion": 1, "generation": 9, "policies": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        (b'{"formatVersion": 1, "generation": NaN, "policies": [], "secrets": []}', "not JSON"),
        (b'{"formatVersion": 1, "generation": 1e400, "policies": [], "secrets": []}', "not JSON"),
        (b'{"formatVersion": 1, "generation": 1, "policies": [], "secrets": []}\xff', "not UTF-8"),
    ],
)
def test_a_hostile_snapshot_push_is_a_400_and_changes_nothing(service, issuer, body, why):
    before = service.admin("GET", "/admin/v1/snapshot").json()
    refused = _pushes(service, "malformed")
    response = service.admin("PUT", "/admin/v1/snapshot", body)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request", "error_description": f"body is {why}"}
    after = service.admin("GET", "/admin/v1/snapshot").json()
    assert (after["generation"], after["version"]) == (before["generation"], before["version"])
    assert _pushes(service, "malformed") == refused + 1  # counted, for an alert on refused pushes


def test_a_deep_but_small_snapshot_is_refused_as_invalid_not_crashed_on(service, issuer):
    document = _snapshot(issuer.issuer, 7)
    document["policies"][0]["spec"]["identityHeaders"]["claims"] = json.loads("[" * 800 + "]" * 800)
    response = service.admin("PUT", "/admin/v1/snapshot", document)
    assert response.status_code == 422
    assert service.admin("GET", "/admin/v1/snapshot").json()["generation"] == 1


def test_admin_401_names_its_scheme(service):
    response = service.admin("GET", "/admin/v1/snapshot", token=None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="authgate-admin"'


@pytest.mark.parametrize(
    "path", ["/", "/ext-authz/nginx", "/ext-authz/envoy/mcp", "/metrics/", "/metricsx", "/healthz"]
)
def test_the_metrics_port_answers_only_metrics(service, mint, path):
    token = mint(audience=RESOURCE, scope="mcp:read")
    headers = {"X-Original-URL": f"{RESOURCE}/tools", "X-Original-Method": "GET", "Authorization": f"Bearer {token}"}
    response = httpx.get(f"http://127.0.0.1:{service.metrics_port}{path}", headers=headers)
    assert response.status_code == 404
    assert "authgate_checks_total" not in response.text
    assert httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics").status_code == 200


@pytest.mark.parametrize(
    ("port", "path"),
    [("check_port", "/"), ("check_port", "/metrics"), ("check_port", "/ext-authz/nginxx"), ("admin_port", "/metrics")],
)
def test_every_port_answers_404_outside_its_own_paths(service, port, path):
    assert httpx.get(f"http://127.0.0.1:{getattr(service, port)}{path}").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "https://[::1].evil.example/mcp",  # urllib would read the host as ::1
        "https://api.example.com\\@evil.example/mcp",
        "https://127.1/mcp",
        "https://api.example.com/mcp;x",
        "https://api.example.com/mcp/health/..;/admin",
        "https://api.example.com/mcp/%252e%252e/admin",
    ],
)
def test_hostile_original_urls_are_400(service, url):
    response = service.nginx_check(url, "GET")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_a_token_that_was_a_503_with_a_traceback_is_a_401(service, signing_keys, issuer):
    from tests.infra.keys import raw_claims

    token = signing_keys["ES256"].sign_raw(raw_claims(issuer.issuer, RESOURCE, exp="1" + "0" * 400))
    response = service.nginx_check(f"{RESOURCE}/tools", "GET", token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
