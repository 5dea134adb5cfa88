"""authgate's RSS against the number of distinct valid tokens it has seen, and the p99 of
a paced (open-loop) load at a fixed share of the maximum rate, with one cached token and
then cycling over every token seen.

One fresh authgate process (default log level, pinned like the other servers, the decision
cache off so that the figure is the verified-token cache's alone): RSS and the
verified-token cache size (its own gauge, `authgate_verified_token_cache_size`) at N = 0,
then after each new batch of distinct tokens has been presented once, up to the largest N.
If authgate has a `--token-cache-entries` flag the cache is sized to the largest N; without
it the cache keeps its built-in bound, and the table shows what that means.

The paced load runs against a second process as deployed (decision cache on, default
size), which is then shown every token too: its RSS over the first's at the same N is what
the decision cache holds. The load is vegeta (`vegeta attack -rate`, open loop, Go, built
by `make bench` like ghz) pinned to the load CPU, or bench/paced_load.py where vegeta is
not built; the same load against the raw ASGI app (bench/baseline.py raw, which answers
without doing anything) first gives the floor: the p99 this machine, at that moment, and
the load generator reach with no authorizer at all.
"""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tests.infra.ports import free_port

from bench import authorino, loadgen, table
from bench.issuer import RESOURCE, SCOPE, StaticIssuer
from bench.tokens import distinct_tokens, present_once


@dataclass
class RssPoint:
    tokens: int
    rss_bytes: int
    cached_entries: float


@dataclass
class Paced:
    label: str
    rate: float
    figures: dict


@dataclass
class MemoryResult:
    points: list[RssPoint]  # decision cache off
    cache_flag: bool
    paced: list[Paced] = field(default_factory=list)
    with_decisions: RssPoint | None = None  # the deployed process after every token, decision cache on


def _cache_size(metrics_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5, trust_env=False).text
    match = re.search(r"^authgate_verified_token_cache_size\s+([\d.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


_GC = re.compile(r'^authgate_gc_pause_seconds_(count|sum)\{generation="(\d)"\}\s+([\d.e+-]+)$', re.MULTILINE)


def _gc_pauses(metrics_port: int) -> dict[str, float]:
    """authgate_gc_pause_seconds' count and sum per generation ("count2", "sum2", ...)."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5, trust_env=False).text
    return {f"{kind}{generation}": float(value) for kind, generation, value in _GC.findall(text)}


def _paced_on(server: table.Authgate, *args) -> dict:
    """`paced`, with the garbage collector's passes during the run (from authgate's metric)."""
    before = _gc_pauses(server.metrics_port)
    figures = paced(*args)
    after = _gc_pauses(server.metrics_port)
    figures["gc"] = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    return figures


def paced(
    work: Path, url: str, tokens: list[str], rate: float, seconds: float, load_prefix: list[str], name: str
) -> dict:
    """A paced load at `rate` for `seconds`, cycling over `tokens`: vegeta when built."""
    vegeta = authorino.built("vegeta")
    if vegeta is not None:
        return _vegeta(vegeta, work, url, tokens, rate, seconds, load_prefix, name)
    return _paced_load(work, url, tokens, rate, seconds, load_prefix, name)


def _vegeta(
    vegeta: str,
    work: Path,
    url: str,
    tokens: list[str],
    rate: float,
    seconds: float,
    load_prefix: list[str],
    name: str,
) -> dict:
    """`vegeta attack` (one target per token, in turn; 32 keep-alive connections at most),
    its JSON report as paced_load's figures. `rate` 0: as fast as 32 workers go."""
    targets = work / f"vegeta-{name}.txt"
    with open(targets, "w") as out:
        for token in tokens:
            out.write(f"GET {url}\nHost: {table.HOST}\nAuthorization: Bearer {token}\n\n")
    results = work / f"vegeta-{name}.bin"
    command = [*load_prefix, vegeta, "attack", "-targets", str(targets), "-rate", f"{rate:.0f}/s"]
    command += ["-duration", f"{seconds:g}s", "-connections", "32", "-max-connections", "32", "-workers", "32"]
    command += ["-max-workers", "32", "-keepalive", "-timeout", "10s", "-output", str(results)]
    subprocess.run(command, check=True, timeout=seconds + 120)
    report = subprocess.run(
        [vegeta, "report", "-type", "json", str(results)], check=True, capture_output=True, text=True, timeout=120
    )
    figures = json.loads(report.stdout)
    latencies, codes = figures["latencies"], figures.get("status_codes") or {}
    errors = {code: count for code, count in codes.items() if code != "200"}
    return {
        "tool": "vegeta",
        "rate_sent": figures.get("rate", 0.0),
        "throughput": figures.get("throughput", 0.0),  # answered without error, per second
        "answered": codes.get("200", 0),
        "errors": errors,
        "p50_ms": latencies["50th"] / 1e6,
        "p99_ms": latencies["99th"] / 1e6,
        "max_ms": latencies["max"] / 1e6,
    }


def _paced_load(
    work: Path, url: str, tokens: list[str], rate: float, seconds: float, load_prefix: list[str], name: str
) -> dict:
    """bench/paced_load.py at `rate` for `seconds`, cycling over `tokens`."""
    requests = work / f"paced-{name}.json"
    requests.write_text(
        json.dumps([{"kind": "check", "headers": {"Authorization": f"Bearer {token}"}} for token in tokens])
    )
    out = work / f"paced-{name}.out.json"
    command = [*load_prefix, sys.executable, "-m", "bench.paced_load", "--url", url, "--host", table.HOST]
    command += ["--requests", str(requests), "--rate", f"{rate:.0f}", "--min-seconds", f"{seconds:g}"]
    command += ["--max-seconds", f"{seconds:g}", "--window", f"{max(seconds, 1):g}", "--out", str(out)]
    subprocess.run(command, check=True, timeout=seconds + 120, cwd=table.ROOT)
    return {"tool": "bench/paced_load.py", **json.loads(out.read_text())}


def _floor(work: Path, token: str, rate: float, seconds: float, server_prefix: list[str], load_prefix: list[str]):
    """The same paced load against the raw ASGI app: the p99 with no authorizer at all."""
    port = free_port()
    log = open(work / "floor.log", "wb")  # noqa: SIM115 - closed with the process below
    process = subprocess.Popen(
        [*server_prefix, sys.executable, "-m", "bench.baseline", str(port), "raw"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=table.ROOT,
    )
    try:
        url = f"http://127.0.0.1:{port}{table.ENVOY_CHECK_PATH}"
        table.wait_http(url, process, work / "floor.log", lambda r: r.status_code == 200)
        return paced(work, url, [token], rate, seconds, load_prefix, "floor")
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def measure(
    work: Path,
    issuer: StaticIssuer,
    token: str,
    server_prefix: list[str],
    load_prefix: list[str],
    counts: list[int],
    paced_rate: float | None,
    paced_seconds: float,
) -> MemoryResult:
    policy_file = work / "policy.yaml"
    cache_flag = table.authgate_supports(table.TOKEN_CACHE_FLAG)
    cache_entries = max(counts) if cache_flag else None
    result = MemoryResult([], cache_flag)
    tokens = distinct_tokens(issuer, "ES256", RESOURCE, SCOPE, max(counts))
    server = table.start_authgate(
        "authgate-memory", policy_file, work, "info", server_prefix, token, cache_entries, decision_entries=0
    )
    try:
        gc.collect()
        seen = 0
        for count in sorted(counts):
            if count > seen:
                _present(server, tokens[seen:count], f"tokens {seen}..{count}")
                seen = count
            time.sleep(1.0)  # let the decision log drain
            result.points.append(_point(server, count))
            print(
                f"  {count:7,} tokens: RSS {result.points[-1].rss_bytes / 2**20:7.1f} MiB, "
                f"cache {result.points[-1].cached_entries:,.0f} entries",
                flush=True,
            )
    finally:
        server.stop()
    if paced_rate:
        figures = _floor(work, token, paced_rate, paced_seconds, server_prefix, load_prefix)
        result.paced.append(Paced("the raw ASGI app (no authorizer: the floor)", paced_rate, figures))
    server = table.start_authgate("authgate-paced", policy_file, work, "info", server_prefix, token, cache_entries)
    try:
        if paced_rate:
            figures = _paced_on(
                server, work, server.check_url, [token], paced_rate, paced_seconds, load_prefix, "one-token"
            )
            result.paced.append(Paced("one cached token", paced_rate, figures))
        if seen:
            _present(server, tokens[:seen], f"tokens 0..{seen}, decision cache on")
            time.sleep(1.0)
            result.with_decisions = _point(server, seen)
        if paced_rate and seen:
            figures = _paced_on(
                server, work, server.check_url, tokens[:seen], paced_rate, paced_seconds, load_prefix, "all-tokens"
            )
            result.paced.append(Paced(f"cycling over the {seen:,} tokens seen", paced_rate, figures))
            # That rate is half of what one cached token allows; every check over 100,000
            # tokens is decided afresh (the decision cache holds fewer), so it can saturate
            # the process. Also at half of this load's own maximum (vegeta unpaced: -rate 0).
            vegeta = authorino.built("vegeta")
            if vegeta is not None:
                most = _vegeta(vegeta, work, server.check_url, tokens[:seen], 0, paced_seconds, load_prefix, "max")
                own, maximum = most["throughput"] / 2, most["throughput"]
                figures = _paced_on(
                    server, work, server.check_url, tokens[:seen], own, paced_seconds, load_prefix, "all-tokens-own"
                )
                label = f"cycling over the {seen:,} tokens seen, at half their own maximum ({maximum:,.0f}/s)"
                result.paced.append(Paced(label, own, figures))
    finally:
        server.stop()
    return result


def _present(server: table.Authgate, tokens: list[str], what: str) -> None:
    statuses = present_once(server.check_port, table.ENVOY_CHECK_PATH, table.HOST, tokens)
    if set(statuses) != {200}:
        raise RuntimeError(f"memory: presenting {what}: statuses {statuses}")


def _point(server: table.Authgate, count: int) -> RssPoint:
    return RssPoint(count, loadgen.process_rss_bytes(server.process.pid), _cache_size(server.metrics_port))
