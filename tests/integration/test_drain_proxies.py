"""Graceful drain measured through the real proxies: the shipped nginx and Envoy examples in
front of two `authgate serve --drain-seconds` replicas, each replica restarted in turn with
SIGTERM while a paced load generator sends checks; every check must be answered 200.

The examples name one authgate; a deployment behind them has several replicas, so the test
gives the check upstream two: nginx an `upstream` with two servers (no active health checks
in open-source nginx: a replica that has stopped listening is skipped by
`proxy_next_upstream error`), Envoy a cluster with two endpoints, each health-checked on its
`/readyz` (admin port), which turns 503 at SIGTERM, so Envoy stops sending before the drain
ends, as Kubernetes endpoints do.

The load is bounded in count (RATE x MAX_SECONDS) and time (MAX_SECONDS); it runs at least
MIN_SECONDS and until both restarts are done. The figures are recorded as user properties
(`pytest --junitxml` shows them) and printed.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from tests.infra.envoy import Envoy
from tests.infra.nginx import Nginx
from tests.infra.processes import Process
from tests.infra.upstream import EchoUpstream
from tests.support import proxy_cases
from tests.support.authgate import LOCAL_EGRESS, Authgate, policy_yaml
from tests.support.leaks import assert_clean_log

pytestmark = pytest.mark.integration

RESOURCE = "https://mcp.example.com/mcp"
HOST = "mcp.example.com"
ROOT = Path(__file__).resolve().parents[2]
DRAIN_SECONDS = 3.0
NGINX_FAIL_TIMEOUT = 2
RATE = 250  # checks per second
MIN_SECONDS = 20.0
MAX_SECONDS = 45.0
# Envoy counters that say where a failed check failed (printed with the figures).
ENVOY_FAILURE_COUNTERS = re.compile(
    r"(ext_authz\.(error|denied|failure_mode)|upstream_rq_5xx|cx_connect_fail|overflow|health_check\.(attempt|failure)"
    r"|upstream_rq_timeout|upstream_cx_destroy_remote_with_active_rq): [1-9]"
)


def figures_line(proxy: str, figures: dict) -> str:
    return (
        f"{proxy}: {figures['rate_sent']:.0f} checks/s for {figures['seconds']:.1f} s, sent {figures['sent']}, "
        f"answered 2xx {figures['answered_2xx']}, statuses {figures['statuses']}, errors {figures['errors']}, "
        f"p99 {figures['p99_ms']} ms"
    )


def paced_load(proxy_url: str, tokens: list[str], work_dir: Path) -> tuple[Process, Path, Path]:
    """bench/paced_load.py in its own process (the proxies' app and issuer share this one)."""
    requests_file, out, stop = work_dir / "requests.json", work_dir / "figures.json", work_dir / "stop"
    requests_file.write_text(
        json.dumps([{"kind": "valid", "headers": {"Authorization": f"Bearer {t}"}} for t in tokens])
    )
    command = [sys.executable, "-m", "bench.paced_load", "--url", f"{proxy_url}/mcp/tools", "--host", HOST]
    command += ["--requests", str(requests_file), "--rate", str(RATE), "--min-seconds", str(MIN_SECONDS)]
    command += ["--max-seconds", str(MAX_SECONDS), "--stop-file", str(stop), "--out", str(out)]
    return Process("paced-load", command, log_dir=work_dir, cwd=ROOT).start(), out, stop


def restart(replica: Authgate, generation: int, logs: list[str]) -> None:
    """SIGTERM (a drain), wait for the exit, start a new process on the same ports."""
    assert replica.process.popen is not None
    replica.process.popen.send_signal(signal.SIGTERM)
    assert replica.process.popen.wait(timeout=DRAIN_SECONDS + 20) == 0
    logs.append(replica.log())
    replica.process = Process(
        f"{replica.process.name.split('~')[0]}~{generation}", replica.process.args, log_dir=replica.log_dir
    )
    replica.start()


def run_with_rolling_restart(
    proxy_url: str,
    replicas: list[Authgate],
    tokens: list[str],
    wait_routable: Callable[[Authgate], None],
    work_dir: Path,
) -> tuple[dict, list[str]]:
    logs: list[str] = []
    load, out, stop = paced_load(proxy_url, tokens, work_dir)
    try:
        time.sleep(2)  # under load with both replicas
        for generation, replica in enumerate(replicas, start=1):
            restart(replica, generation, logs)
            wait_routable(replica)
            time.sleep(1)
        restarted_at = time.monotonic()
        stop.touch()
        assert load.popen is not None
        assert load.popen.wait(timeout=MAX_SECONDS + 30) == 0, load.log_tail()
    finally:
        load.stop()
    figures = json.loads(out.read_text())
    assert figures["seconds"] >= MIN_SECONDS
    assert time.monotonic() - restarted_at < figures["seconds"], "the restarts did not finish inside the load"
    return figures, logs


@pytest.fixture
def replicas(start_authgate: Callable[..., Authgate], issuer) -> list[Authgate]:
    text = policy_yaml(issuer.issuer, RESOURCE)
    return [
        start_authgate(text, *LOCAL_EGRESS, "--drain-seconds", str(DRAIN_SECONDS), name=f"replica{i}") for i in range(2)
    ]


@pytest.fixture
def app() -> EchoUpstream:
    with EchoUpstream() as upstream:
        yield upstream


def assert_every_check_answered(proxy: str, figures: dict, logs: list[str], record_property) -> None:
    line = figures_line(proxy, figures)
    print(line)
    record_property(f"drain_{proxy}", line)
    for text in logs:
        assert_clean_log(text, f"a drained replica's log ({proxy})")
    assert figures["sent"] >= RATE * MIN_SECONDS * 0.5, line  # the load really ran
    assert not figures["errors"], line
    assert figures["answered_2xx"] == figures["sent"], line


def test_nginx_with_two_replicas_restarted_in_turn_loses_no_check(
    replicas: list[Authgate], app: EchoUpstream, mint, tmp_path: Path, record_property
) -> None:
    proxy_cases.require_nginx()
    first, second = replicas
    proxy = Nginx(tmp_path / "nginx", check_port=first.check_port, public_port=first.port, app_port=app.port)
    text = proxy.config_file.read_text()
    one_server = f"server 127.0.0.1:{first.check_port};"
    assert text.count(one_server) == 1
    # nginx marks a server that refused a connection failed for fail_timeout: the next
    # replica is restarted only after that, or both would be marked failed (no live upstreams).
    two_servers = "\n        ".join(
        f"server 127.0.0.1:{r.check_port} max_fails=1 fail_timeout={NGINX_FAIL_TIMEOUT}s;" for r in (first, second)
    )
    proxy.config_file.write_text(text.replace(one_server, two_servers))
    proxy.validate()
    tokens = [mint(audience=RESOURCE, subject=f"user{i}") for i in range(50)]
    with proxy:
        figures, logs = run_with_rolling_restart(
            proxy.url, replicas, tokens, lambda replica: time.sleep(NGINX_FAIL_TIMEOUT + 1), tmp_path
        )
    assert_every_check_answered("nginx", figures, logs, record_property)


def envoy_with_two_health_checked_endpoints(config_file: Path, replicas: list[Authgate]) -> None:
    config = yaml.safe_load(config_file.read_text())
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "authgate_check")
    cluster["load_assignment"]["endpoints"] = [
        {
            "lb_endpoints": [
                {
                    "endpoint": {
                        "address": {"socket_address": {"address": "127.0.0.1", "port_value": r.check_port}},
                        "health_check_config": {"port_value": r.admin_port},
                    }
                }
                for r in replicas
            ]
        }
    ]
    cluster["health_checks"] = [
        {
            "timeout": "0.5s",
            "interval": "0.5s",
            # Envoy counts the ext_authz client's requests as no traffic: without these it
            # would check every 60 s and go on sending to a draining replica.
            "no_traffic_interval": "0.5s",
            "no_traffic_healthy_interval": "0.5s",
            "unhealthy_threshold": 1,
            "healthy_threshold": 1,
            "http_health_check": {"path": "/readyz"},
        }
    ]
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))


def test_envoy_with_two_replicas_restarted_in_turn_loses_no_check(
    replicas: list[Authgate], app: EchoUpstream, mint, tmp_path: Path, record_property
) -> None:
    proxy_cases.require_envoy()
    first = replicas[0]
    proxy = Envoy(tmp_path / "envoy", check_port=first.check_port, public_port=first.port, app_port=app.port)
    envoy_with_two_health_checked_endpoints(Path(proxy.config_file), replicas)
    proxy.validate()
    tokens = [mint(audience=RESOURCE, subject=f"user{i}") for i in range(50)]

    def healthy_in_envoy(replica: Authgate) -> None:
        marker = f"authgate_check::127.0.0.1:{replica.check_port}::health_flags::healthy"
        deadline = time.monotonic() + 20
        while marker not in httpx.get(f"{proxy.admin_url}/clusters", timeout=5).text:
            assert time.monotonic() < deadline, f"Envoy never saw {replica.check_port} healthy again"
            time.sleep(0.2)

    with proxy:
        for replica in replicas:
            healthy_in_envoy(replica)
        figures, logs = run_with_rolling_restart(proxy.url, replicas, tokens, healthy_in_envoy, tmp_path)
        counters = [line for line in proxy.stats().splitlines() if ENVOY_FAILURE_COUNTERS.search(line)]
    print("\n".join(counters))
    assert_every_check_answered("envoy", figures, logs, record_property)
