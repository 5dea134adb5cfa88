"""The fail-closed table of docs/security.md, proven against a real `authgate serve` process.

The issuer is the tests' JWKS server (tests/support/jwks_server.py): a real HTTP server on
127.0.0.1 whose faults (down, slow, HTML, a 5 MB JWKS, a rotation at a chosen moment) can be
switched on, which the real oidc-provider cannot do on demand. Each test is named after its
pass criterion. Timings are behaviour windows (`--jwks-*-seconds`), never speed assertions.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from tests.infra.jwks_server import JwksServer
from tests.infra.keys import SigningKey, claims
from tests.support.authgate import LOCAL_EGRESS, Authgate, policy_yaml
from tests.support.leaks import MINTED_TOKENS

RESOURCE = "https://api.example.com/mcp"
HEALTHY_RESOURCE = "https://healthy.example.com/mcp"
FIVE_MB = 5 * 1024 * 1024


class FaultyIssuer(JwksServer):
    """The tests' JWKS server with two more faults: `html` (a login page with status 200, as
        a misrouted proxy answers) and `huge5mb` (a 5 MB JWKS, well over authgate's 256 KiB cap), with
    a Content-Length or (`huge5mb_streamed`) chunked without one.
        `bytes_sent` counts JWKS body bytes handed to the server for sending."""

    bytes_sent = 0

    async def _jwks(self, request: Request) -> Response:
        if self.mode == "html":
            self.fetches += 1
            return Response("<!doctype html><html><body>Sign in</body></html>", 200, media_type="text/html")
        if self.mode in ("huge5mb", "huge5mb_streamed"):
            self.fetches += 1
            key = b'{"kty":"oct","k":"' + b"A" * 1000 + b'"},'
            body = b'{"keys":[' + key * (FIVE_MB // len(key)) + b"{}]}"
            if self.mode == "huge5mb":  # declared: Content-Length says 5 MB
                return Response(body, 200, media_type="application/json")
            chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))  # chunked: only the count can cap it
            return StreamingResponse(iter(chunks), 200, media_type="application/json")
        return await super()._jwks(request)


def token_for(server: JwksServer, key: SigningKey, resource: str = RESOURCE, **extra) -> str:
    token = key.sign(claims(server.issuer, resource, **extra))
    MINTED_TOKENS.add(token)  # the log guard of start_authgate looks for it
    return token


def check(service: Authgate, token: str, resource: str = RESOURCE, client: httpx.Client | None = None) -> int:
    headers = {"X-Original-URL": f"{resource}/tools", "X-Original-Method": "POST", "Authorization": f"Bearer {token}"}
    sender = client or httpx
    return sender.get(service.check_url("nginx"), headers=headers, timeout=15).status_code


def issuer_state(service: Authgate, issuer_url: str) -> dict:
    policies = service.admin("GET", "/admin/v1/snapshot").json()["policies"]
    return next(i for p in policies for i in p["issuers"] if i["issuer"] == issuer_url)


def rss_kib(service: Authgate) -> int:
    for line in Path(f"/proc/{service.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def faulty() -> FaultyIssuer:
    with FaultyIssuer([SigningKey.generate("ES256")]) as server:
        yield server


@pytest.fixture
def healthy() -> JwksServer:
    with JwksServer([SigningKey.generate("ES256")]) as server:
        yield server


def two_policies(faulty: JwksServer, healthy: JwksServer) -> str:
    return policy_yaml(faulty.issuer) + "---\n" + policy_yaml(healthy.issuer, HEALTHY_RESOURCE, name="healthy")


# -- IdP down ------------------------------------------------------------------------------
REFRESH, STALE = 2.0, 4.0


def test_idp_down_with_a_warm_cache_allows_until_the_stale_limit_then_503_cached_tokens_too(
    start_authgate: Callable[..., Authgate], faulty: FaultyIssuer
) -> None:
    key = faulty.keys[0]
    service = start_authgate(
        policy_yaml(faulty.issuer),
        *LOCAL_EGRESS,
        "--jwks-refresh-seconds",
        str(REFRESH),
        "--jwks-stale-seconds",
        str(STALE),
    )
    cached = token_for(faulty, key, subject="cached", ttl=600)
    assert check(service, cached) == 200  # now in the verified-token cache
    faulty.mode = "down"
    down_at = time.monotonic()
    # Within the stale limit: the cached token and tokens never seen (they need the keys) pass.
    assert check(service, cached) == 200
    assert check(service, token_for(faulty, key, subject="unseen")) == 200
    statuses: Counter[int] = Counter()
    first_503 = None
    deadline = down_at + REFRESH + STALE + 20
    while time.monotonic() < deadline:
        answers = (check(service, cached), check(service, token_for(faulty, key, subject="fresh")))
        statuses.update(answers)
        if answers == (503, 503):
            first_503 = time.monotonic()
            break
        assert set(answers) <= {200, 503}, answers  # never 401 while the IdP is down
        time.sleep(0.2)
    assert first_503 is not None, f"never failed closed: {statuses}"
    assert first_503 - down_at >= STALE, "failed closed before the stale limit"
    assert 401 not in statuses
    for _ in range(3):  # and it stays closed, for the cached token too
        assert check(service, cached) == 503
    state = issuer_state(service, faulty.issuer)
    assert state["usable"] is False and state["lastError"]
    faulty.mode = "ok"  # the IdP returns: the background retry picks the keys up again
    deadline = time.monotonic() + 30
    while check(service, cached) != 200:
        assert time.monotonic() < deadline, "did not recover after the IdP came back"
        time.sleep(0.3)


def test_idp_down_with_a_cold_cache_is_503_never_401(
    start_authgate: Callable[..., Authgate], faulty: FaultyIssuer
) -> None:
    faulty.mode = "down"
    service = start_authgate(policy_yaml(faulty.issuer), *LOCAL_EGRESS, "--jwks-refresh-seconds", "2")
    token = token_for(faulty, faulty.keys[0])
    for _ in range(5):
        response = httpx.get(
            service.check_url("nginx"),
            headers={"X-Original-URL": f"{RESOURCE}/x", "X-Original-Method": "GET", "Authorization": f"Bearer {token}"},
            timeout=15,
        )
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
        assert "www-authenticate" not in response.headers
        time.sleep(0.3)
    faulty.mode = "ok"
    deadline = time.monotonic() + 30
    while check(service, token) != 200:
        assert time.monotonic() < deadline, "did not recover after the IdP came up"
        time.sleep(0.3)


# -- IdP answers badly: slow, HTML, 5 MB -----------------------------------------------------
@pytest.mark.parametrize("mode", ["slow", "html", "huge5mb", "huge5mb_streamed"])
def test_a_slow_html_or_huge_jwks_is_503_with_a_bounded_fetch_and_the_process_unaffected(
    start_authgate: Callable[..., Authgate], faulty: FaultyIssuer, healthy: JwksServer, mode: str
) -> None:
    faulty.mode = mode
    faulty.delay = 6.0  # slow: well beyond --egress-timeout
    service = start_authgate(two_policies(faulty, healthy), *LOCAL_EGRESS, "--egress-timeout", "2")
    rss_before = rss_kib(service)
    token = token_for(faulty, faulty.keys[0])
    healthy_token = token_for(healthy, healthy.keys[0], HEALTHY_RESOURCE)
    answers: list[int] = []
    stop = threading.Event()

    def the_other_issuer_keeps_passing() -> None:  # the process is unaffected while it fetches
        with httpx.Client() as client:
            while not stop.is_set() and len(answers) < 2000:
                answers.append(check(service, healthy_token, HEALTHY_RESOURCE, client))

    bystander = threading.Thread(target=the_other_issuer_keeps_passing)
    bystander.start()
    try:
        for _ in range(4):
            started = time.monotonic()
            assert check(service, token) == 503
            assert time.monotonic() - started < 15  # bounded by the egress timeout, not the IdP
            time.sleep(0.5)
    finally:
        stop.set()
        bystander.join(30)
    assert answers and set(answers) == {200}, Counter(answers)
    state = issuer_state(service, faulty.issuer)
    assert state["usable"] is False
    expected = {
        "slow": ("within 2.0s", "timed out after 2.0s"),
        "html": ("json",),
        "huge5mb": ("exceeds 262144",),
        "huge5mb_streamed": ("exceeds 262144",),
    }[mode]
    assert any(text in (state["lastError"] or "").lower() for text in expected), state["lastError"]
    assert rss_kib(service) - rss_before < 20 * 1024, "memory grew by more than 20 MiB"
    assert httpx.get(f"http://127.0.0.1:{service.admin_port}/healthz", timeout=5).status_code == 200


# -- keys rotated during load ------------------------------------------------------------------
def test_keys_rotated_during_load_refuse_no_valid_token_and_cost_one_refetch(
    start_authgate: Callable[..., Authgate], faulty: FaultyIssuer
) -> None:
    old_key, new_key = faulty.keys[0], SigningKey.generate("ES256")
    service = start_authgate(policy_yaml(faulty.issuer), *LOCAL_EGRESS)  # default refresh 300 s, cooldown 30 s
    old_tokens = [token_for(faulty, old_key, subject=f"old{i}") for i in range(200)]
    new_tokens = [token_for(faulty, new_key, subject=f"new{i}") for i in range(400)]
    rotated = threading.Event()
    lock = threading.Lock()
    results: Counter[tuple[str, int]] = Counter()
    errors: list[str] = []
    budget = iter(range(4000))  # bounded in count

    def load(worker: int) -> None:
        with httpx.Client() as client:
            n = worker
            deadline = time.monotonic() + 30  # and in time
            while time.monotonic() < deadline:
                with lock:
                    if next(budget, None) is None:
                        return
                    kind = "new" if rotated.is_set() else "old"
                pool = new_tokens if kind == "new" else old_tokens
                try:
                    status = check(service, pool[n % len(pool)], client=client)
                except httpx.HTTPError as error:
                    errors.append(repr(error))
                    continue
                with lock:
                    results[(kind, status)] += 1
                    if kind == "new" and results[("new", 200)] + results[("new", 401)] >= 1200:
                        return
                n += 7

    workers = [threading.Thread(target=load, args=(i,)) for i in range(6)]
    for worker in workers:
        worker.start()
    time.sleep(2)  # under load with the old key
    fetches_before = faulty.fetches
    faulty.keys = [old_key, new_key]  # the IdP publishes the new key ...
    rotated.set()  # ... and at once hands out tokens signed with it
    for worker in workers:
        worker.join(60)
    assert not errors, errors[:3]
    assert results[("old", 200)] > 0 and results[("new", 200)] > 0, results
    refused = {k: v for k, v in results.items() if k[1] != 200}
    assert not refused, f"valid tokens refused across the rotation: {refused} of {results}"
    assert faulty.fetches - fetches_before == 1, "one refetch, shared by every concurrent request"


# -- an invalid snapshot pushed ------------------------------------------------------------------
def snapshot_generation_metric(service: Authgate) -> float:
    text = httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5).text
    line = next(line for line in text.splitlines() if line.startswith("authgate_snapshot_generation "))
    return float(line.split()[1])


def test_an_invalid_snapshot_pushed_is_refused_the_old_one_kept_and_checks_go_on(
    start_authgate: Callable[..., Authgate], faulty: FaultyIssuer
) -> None:
    """The replica's side: every refusal is a 4xx, generation, version and the generation
    metric stay, /readyz stays 200 and the checks sent meanwhile are all allowed. (The
    operator's side, a Rejected event and Ready=False, is tests/e2e/test_operator.py.)"""
    service = start_authgate(None, *LOCAL_EGRESS, ready=False)
    good = {"formatVersion": 1, "generation": 7, "policies": list(yaml.safe_load_all(policy_yaml(faulty.issuer)))}
    good["secrets"] = []
    assert service.admin("PUT", "/admin/v1/snapshot", good).status_code == 200
    kept = service.admin("GET", "/admin/v1/snapshot").json()
    token = token_for(faulty, faulty.keys[0])
    answers: list[int] = []
    stop = threading.Event()

    def checks_meanwhile() -> None:
        with httpx.Client() as client:
            while not stop.is_set() and len(answers) < 5000:
                answers.append(check(service, token, client=client))

    unknown_field = dict(good, generation=8, policies=[dict(good["policies"][0], spec={"bogus": 1})])
    invalid = {
        "unknown field": (unknown_field, {422}),
        "future format": (dict(good, generation=8, formatVersion=99), {400, 422}),
        "not JSON": (b'{"formatVersion": 1, "generation": 8, "policies": [', {400}),
        "over 16 MiB": (b'{"pad": "' + b"x" * (17 * 1024 * 1024) + b'"}', {400, 413}),
        "older generation": (dict(good, generation=6), {409}),
    }
    worker = threading.Thread(target=checks_meanwhile)
    worker.start()
    try:
        for name, (document, statuses) in invalid.items():
            assert service.admin("PUT", "/admin/v1/snapshot", document).status_code in statuses, name
            state = service.admin("GET", "/admin/v1/snapshot").json()
            assert (state["generation"], state["version"]) == (kept["generation"], kept["version"]), name
            assert snapshot_generation_metric(service) == 7, name
            assert httpx.get(f"http://127.0.0.1:{service.admin_port}/readyz", timeout=5).status_code == 200
    finally:
        stop.set()
        worker.join(30)
    assert answers and set(answers) == {200}, Counter(answers)
