"""The operator's side of the admin API (authgate_operator/replicas.py) against real
`authgate serve` processes: each replica gets each snapshot once, the one it already
enforces never again, and a replica that lost its state under the same address (a
restarted container keeps its pod IP) gets it back in the same round."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from tests.infra.processes import HttpUrl, Process
from tests.support.authgate import LOCAL_EGRESS, Authgate

from authgate_operator.kube import Endpoint
from authgate_operator.replicas import Replicas

pytestmark = pytest.mark.integration


def _document(generation: int, resource: str) -> bytes:
    """The PUT body of a one-policy snapshot."""
    policy = {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": "api", "namespace": "default", "uid": "uid-api"},
        "spec": {"resource": resource, "issuers": [{"issuer": "http://127.0.0.1:9/"}]},
    }
    body = {"formatVersion": 1, "generation": generation, "policies": [policy], "secrets": []}
    return json.dumps(body).encode()


def _version(replica: Authgate, body: bytes) -> str:
    """The content version of `body`, as a scratch replica computes it (compile.content_version)."""
    return replica.admin("PUT", "/admin/v1/snapshot", body).json()["version"]


def _pushes(replica: Authgate) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{replica.metrics_port}/metrics", timeout=5).text
    counts = {}
    for line in text.splitlines():
        if line.startswith("authgate_snapshot_pushes_total{"):
            labels, value = line.rsplit(" ", 1)
            counts[labels.split('result="', 1)[1].split('"', 1)[0]] = float(value)
    return counts


def _state_if_none_match(replica: Authgate, tags: str) -> httpx.Response:
    return httpx.get(
        f"http://127.0.0.1:{replica.admin_port}/admin/v1/snapshot",
        headers={"Authorization": f"Bearer {replica.admin_token}", "If-None-Match": tags},
        timeout=5,
    )


def test_each_replica_gets_each_snapshot_once_and_a_restarted_one_again(start_authgate, tmp_path):
    replicas = [start_authgate(None, *LOCAL_EGRESS, ready=False) for _ in range(2)]
    scratch = start_authgate(None, *LOCAL_EGRESS, ready=False, name="scratch")
    endpoints = [Endpoint("127.0.0.1", replica.admin_port, True) for replica in replicas]
    client = Replicas(lambda: replicas[0].admin_token)

    async def sync(generation: int, body: bytes, version: str):
        return await client.sync(endpoints, generation, version, body)

    async def scenario() -> None:
        try:
            first = _document(1, "https://one.example.com/mcp")
            first_version = _version(scratch, first)
            reports = await sync(1, first, first_version)  # not heard from yet: asked, then pushed
            assert [r.enforces(1, first_version) for r in reports] == [True, True]
            assert [_pushes(r).get("accepted") for r in replicas] == [1, 1]

            reports = await sync(1, first, first_version)  # what they enforce already: no push at all
            assert all(r.enforces(1, first_version) and r.error is None for r in reports)
            assert [_pushes(r) for r in replicas] == [{"accepted": 1}, {"accepted": 1}]
            assert reports[0].policies[0]["resource"] == "https://one.example.com/mcp"  # its state, unchanged

            # The whole state carries a weak ETag; asked again with it, 304 while nothing changed.
            whole = replicas[0].admin("GET", "/admin/v1/snapshot")
            tag = whole.headers["etag"]
            assert tag.startswith('W/"')
            again = _state_if_none_match(replicas[0], f'W/"other", {tag}')
            assert again.status_code == 304 and again.content == b""

            second = _document(2, "https://two.example.com/mcp")
            second_version = _version(scratch, second)
            reports = await sync(2, second, second_version)  # known to hold the last one: pushed first
            assert [r.enforces(2, second_version) for r in reports] == [True, True]
            assert [_pushes(r) for r in replicas] == [{"accepted": 2}, {"accepted": 2}]
            # One replica is asked for the policies' key state, the other for its versions.
            assert reports[0].policies[0]["resource"] == "https://two.example.com/mcp"
            assert reports[1].policies == []
            versions = replicas[1].admin("GET", "/admin/v1/snapshot?policies=false").json()
            assert versions == {"ready": True, "generation": 2, "version": second_version}
            assert replicas[0].admin("GET", "/admin/v1/snapshot").headers["etag"] != tag  # a new snapshot, a new tag

            # The first replica restarts under the same address and has nothing.
            replicas[0].stop()
            restarted = Process("restarted", replicas[0].process.args, log_dir=tmp_path)
            restarted.start(HttpUrl(f"http://127.0.0.1:{replicas[0].admin_port}/healthz"), timeout=20)
            try:
                reports = await sync(2, second, second_version)
                assert [r.enforces(2, second_version) for r in reports] == [True, True]
                assert [_pushes(r) for r in replicas] == [{"accepted": 1}, {"accepted": 2}]
                assert reports[0].policies  # the replica that reports the key state, asked again
            finally:
                restarted.stop()
        finally:
            await client.aclose()

    asyncio.run(scenario())
