"""Graceful drain: on SIGTERM readiness turns false at once, every port keeps answering
(open keep-alive connections and new ones) for --drain-seconds, then the process exits 0."""

from __future__ import annotations

import signal
import time

import grpc
import httpx
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tests.integration.test_service import RESOURCE, policy
from tests.support.authgate import LOCAL_EGRESS

DRAIN = 3.0


def test_sigterm_drains_before_it_stops(start_authgate, issuer, mint):
    service = start_authgate(yaml.safe_dump(policy(issuer.issuer)), *LOCAL_EGRESS, "--drain-seconds", str(DRAIN))
    token = mint(audience=RESOURCE, scope="mcp:read")
    headers = {"X-Original-URL": f"{RESOURCE}/tools", "X-Original-Method": "GET", "Authorization": f"Bearer {token}"}
    kept_alive = httpx.Client(base_url=f"http://127.0.0.1:{service.check_port}", timeout=5)
    assert kept_alive.get("/ext-authz/nginx", headers=headers).status_code == 200
    channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
    health = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == serving

    signalled = time.monotonic()
    service.process.popen.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    readyz = httpx.get(f"http://127.0.0.1:{service.admin_port}/readyz", timeout=5)
    assert readyz.status_code == 503 and readyz.json() == {"status": "draining"}
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == not_serving

    answered = 0
    while time.monotonic() - signalled < DRAIN - 0.7:  # well inside the drain period
        assert kept_alive.get("/ext-authz/nginx", headers=headers).status_code == 200
        assert httpx.get(f"{service.check_url('nginx')}", headers=headers, timeout=5).status_code == 200  # new
        answered += 1
        time.sleep(0.1)
    assert answered >= 5
    assert service.process.popen.wait(timeout=DRAIN + 15) == 0
    assert time.monotonic() - signalled >= DRAIN
    kept_alive.close()
    channel.close()
