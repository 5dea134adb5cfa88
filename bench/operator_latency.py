"""Time from applying an OAuthPolicy change to every replica enforcing it.

A real control plane (etcd + kube-apiserver), three `authgate serve` replicas in network
namespaces, `authgate operator` with the chart's RBAC (tests/support/installation.py).
For 1, 100, 1,000 and 10,000 policies in the cluster: 20 edits of one policy (its host changes),
each timed from the API request that changes it to the moment all three replicas answer
for the new host. Needs root (network namespaces) and `make tools`.

    .venv/bin/python -m bench.operator_latency [--sizes 1 100 1000 10000] [--edits 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from kubernetes_asyncio import client
from tests.infra.cluster import session_cluster, stop_session_cluster
from tests.infra.netns import NetnsHost, require_netns
from tests.support.installation import System, eventually, policy

REPORT = Path(__file__).with_name("OPERATOR.md")


async def enforced(http: httpx.AsyncClient, system: System, host: str) -> bool:
    expected = f"https://{host}/.well-known/oauth-protected-resource/mcp"

    async def one(index: int) -> bool:
        response = await http.get(
            f"http://{system.hosts[index].address}:8082/ext-authz/nginx",
            headers={"X-Original-URL": f"https://{host}/mcp", "X-Original-Method": "GET"},
        )
        return response.status_code == 401 and expected in response.headers.get("www-authenticate", "")

    return all(await asyncio.gather(*(one(i) for i in range(len(system.hosts)))))


async def measure_edits(system: System, size: int, edits: int) -> list[float]:
    custom_api_args = ("authgate.dev", "v1alpha1", system.apps, "oauthpolicies", "target")
    samples: list[float] = []
    async with system.cluster.api_client() as api, httpx.AsyncClient(timeout=5, trust_env=False) as http:
        custom = client.CustomObjectsApi(api)
        for edit in range(edits):
            host = f"edit-{size}-{edit}.example.com"
            patch = {"spec": {"resource": f"https://{host}/mcp"}}
            started = time.perf_counter()
            await custom.patch_namespaced_custom_object(
                *custom_api_args, patch, _content_type="application/merge-patch+json"
            )
            while not await enforced(http, system, host):
                if time.perf_counter() - started > 60:
                    raise RuntimeError(f"edit {edit} not enforced after 60 s")
                await asyncio.sleep(0.005)
            samples.append(time.perf_counter() - started)
            await asyncio.sleep(0.2)  # let the status writes of this edit settle
    return samples


def fill(system: System, size: int, existing: int) -> None:
    """Make the cluster hold `size` policies: `target` plus fillers on their own hosts."""
    fillers = [policy(f"filler-{i}", f"filler-{i}.example.com", system.apps) for i in range(existing, size - 1)]
    for start in range(0, len(fillers), 200):
        system.apply(*fillers[start : start + 200])
    eventually(
        lambda: len(system.replica_state(0)["policies"]) == size and len(system.replica_state(2)["policies"]) == size,
        timeout=300,
        interval=0.5,
        what=f"{size} policies on the replicas",
    )

    def all_ready() -> bool:
        items = system.cluster.get_json("oauthpolicies", "-n", system.apps)["items"]
        ready = [
            c
            for item in items
            for c in (item.get("status") or {}).get("conditions", [])
            if c["type"] == "Ready" and c["status"] == "True"
        ]
        return len(items) == size and len(ready) == size

    # Measure steady state: the operator has written the status of every new policy.
    eventually(all_ready, timeout=600, interval=1.0, what=f"{size} policies Ready")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000, 10_000])
    parser.add_argument("--edits", type=int, default=20)
    args = parser.parse_args()
    require_netns()
    work = Path(tempfile.mkdtemp(prefix="authgate-operator-bench-"))
    cluster = session_cluster(work / "cluster")
    hosts = [NetnsHost(f"bench{i}") for i in range(3)]
    system = System(cluster, work, hosts)
    rows = []
    try:
        system.install()
        system.apply(policy("target", "edit-start.example.com", system.apps))
        existing = 0
        for size in sorted(args.sizes):
            fill(system, size, existing)
            existing = size - 1
            samples = asyncio.run(measure_edits(system, size, args.edits))
            rows.append((size, samples))
            print(
                f"{size} policies: p50 {percentile(samples, 0.5) * 1000:.0f} ms, "
                f"p95 {percentile(samples, 0.95) * 1000:.0f} ms",
                flush=True,
            )
    finally:
        system.stop()
        for host in hosts:
            host.close()
        stop_session_cluster()
    lines = [
        "# Operator: apply to enforced",
        "",
        f"Written by `python -m bench.operator_latency` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "A real kube-apiserver and etcd; three `authgate serve` replicas in network namespaces;",
        "`authgate operator` with the chart's RBAC and `--resync-seconds 2`. Each sample: one",
        "merge-patch of a policy's `spec.resource` (a new host) through the API, timed until all",
        "three replicas answer for the new host (polled every 5 ms). Edits start once every",
        "policy in the cluster reports Ready (steady state). Everything shares 2 cores.",
        "",
        "| policies in the cluster | edits | p50 (ms) | p95 (ms) | min (ms) | max (ms) | mean (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, samples in rows:
        ms = [s * 1000 for s in samples]
        lines.append(
            f"| {size:,} | {len(ms)} | {percentile(ms, 0.5):.0f} | {percentile(ms, 0.95):.0f} | "
            f"{min(ms):.0f} | {max(ms):.0f} | {statistics.mean(ms):.0f} |"
        )
    REPORT.write_text("\n".join(lines) + "\n")
    print(REPORT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
