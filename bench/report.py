"""Machine facts, the issue #14 targets and the Markdown of bench/REPORT.md."""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.memory import MemoryResult, RssPoint
from bench.micro import MicroResult
from bench.scale import ScaleResult
from bench.table import TABLE_ROWS, Rounds

ROOT = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown"


def _memory() -> str:
    try:
        match = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    except OSError:
        return "unknown"
    return f"{int(match.group(1)) / 1024 / 1024:.1f} GiB" if match else "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def _wrk_version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"wrk (\S+)", done.stdout + done.stderr)
    return match.group(1) if match else "unknown"


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine_info() -> list[tuple[str, str]]:
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    libraries = ", ".join(
        f"{name} {_version(name)}"
        for name in ("uvicorn", "starlette", "httptools", "uvloop", "cryptography", "jwcrypto", "prometheus-client")
    )
    return [
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} CPUs"),
        ("memory", _memory()),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("libraries", libraries),
        ("wrk", _wrk_version()),
        ("authgate commit", commit),
    ]


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"  # NaN check


def _percent(value: float) -> str:
    return "" if value != value else f"{value:.0%}"


def _median(values) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


@dataclass
class Target:
    """One target of issue #14: the measured ratio, the bound, and which side is good."""

    what: str
    value: float
    bound: float
    at_least: bool  # True: value >= bound meets it
    per_cpu: float = float("nan")
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.value != self.value:
            return "not measured"
        met = self.value >= self.bound if self.at_least else self.value <= self.bound
        return "met" if met else "**missed**"


@dataclass
class Run:
    """Everything one `python -m bench` measured; the renderer reads nothing else."""

    started: datetime.datetime
    elapsed: float
    command: str
    machine: list[tuple[str, str]]
    load_start: str
    load_end: str
    pinning: str
    settings: dict[str, object]
    rounds: Rounds | None = None
    labels: dict[str, str] = field(default_factory=dict)
    memory: MemoryResult | None = None
    scale: ScaleResult | None = None
    micro: MicroResult | None = None
    notes: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)  # name -> file name next to the report


def _paired(rounds: Rounds, a: str, b: str, fn) -> float:
    """Median over rounds of fn(run of a, run of b) for the runs of one round."""
    runs_a, runs_b = rounds.runs.get(a) or [], rounds.runs.get(b) or []
    return _median([fn(x, y) for x, y in zip(runs_a, runs_b, strict=False)])


def rps_ratio(rounds: Rounds, a: str, b: str) -> float:
    return _paired(rounds, a, b, lambda x, y: x.rps / y.rps if y.rps else float("nan"))


def cpu_ratio(rounds: Rounds, a: str, b: str) -> float:
    """Requests per server CPU-second of a over b (= b's CPU per request over a's)."""
    return _paired(rounds, a, b, lambda x, y: y.cpu_us_per_request() / x.cpu_us_per_request())


def cost_ratio(rounds: Rounds, a: str, b: str) -> float:
    """Server CPU per request of a over b."""
    return _paired(rounds, a, b, lambda x, y: x.cpu_us_per_request() / y.cpu_us_per_request())


def targets(run: Run) -> list[Target]:
    out: list[Target] = []
    r = run.rounds
    if r is not None:
        out.append(
            Target(
                "cached allow / raw ASGI, decision log on (req/s)",
                rps_ratio(r, "authgate-log-on", "raw-asgi"),
                0.70,
                True,
                cpu_ratio(r, "authgate-log-on", "raw-asgi"),
            )
        )
        out.append(
            Target(
                "cached allow / raw ASGI, `--log-level warning` (req/s)",
                rps_ratio(r, "authgate-log-off", "raw-asgi"),
                0.80,
                True,
                cpu_ratio(r, "authgate-log-off", "raw-asgi"),
            )
        )
        out.append(
            Target(
                "401 (no token) CPU per request / cached allow's (same process, warning level)",
                cost_ratio(r, "authgate-no-token", "authgate-log-off"),
                1.0,
                False,
                note="a cost ratio: lower is better; req/s ratio "
                f"{_fmt(rps_ratio(r, 'authgate-no-token', 'authgate-log-off'), 2)}",
            )
        )
        out.append(
            Target(
                "Envoy + ext_authz HTTP → authgate / Envoy `jwt_authn` (req/s)",
                rps_ratio(r, "envoy-http-authgate", "envoy-jwt-authn"),
                0.90,
                True,
                cpu_ratio(r, "envoy-http-authgate", "envoy-jwt-authn"),
                note="the path's ceiling, Envoy + ext_authz HTTP → an authorizer that does nothing (the raw ASGI "
                f"app) / `jwt_authn`: {_fmt(rps_ratio(r, 'envoy-http-raw', 'envoy-jwt-authn'), 2)}; authgate / that "
                f"ceiling: {_fmt(rps_ratio(r, 'envoy-http-authgate', 'envoy-http-raw'), 2)}",
            )
        )
        out.append(
            Target(
                "authgate gRPC Check direct / trivial grpc.aio servicer (req/s)",
                rps_ratio(r, "authgate-grpc", "grpc-ceiling"),
                0.80,
                True,
                cpu_ratio(r, "authgate-grpc", "grpc-ceiling"),
                note="authgate runs grpcio's synchronous server (bench/GRPC.md); against the trivial servicer on "
                f"that server: {_fmt(rps_ratio(r, 'authgate-grpc', 'grpc-ceiling-sync'), 2)} (req/s), "
                f"{_fmt(cpu_ratio(r, 'authgate-grpc', 'grpc-ceiling-sync'), 2)} (per server CPU-second)",
            )
        )
        out.append(
            Target(
                "Envoy + gRPC → authgate / Envoy + gRPC → Authorino (req/s)",
                rps_ratio(r, "envoy-grpc-authgate", "envoy-grpc-authorino"),
                2.0,
                True,
                cpu_ratio(r, "envoy-grpc-authgate", "envoy-grpc-authorino"),
            )
        )
        floors = {row.alg: row.floor_us for row in run.micro.rows} if run.micro is not None else {}
        claims_us = run.micro.claim_checks_us if run.micro is not None else float("nan")
        for alg, name in (
            ("ES256", "authgate-distinct"),
            ("RS256", "authgate-distinct-rs256"),
            ("EdDSA", "authgate-distinct-eddsa"),
        ):
            if not r.runs.get(name):
                continue
            # per round: that run's CPU per request over (that round's raw ASGI + the floor and the claim
            # checks measured pinned to the server CPU right after it); else the micro phase's figures
            ratios, parts = [], []
            for m, raw_run in zip(r.runs[name], r.runs.get("raw-asgi", []), strict=False):
                floor = m.reference.get("floor_us", floors.get(alg, float("nan")))
                claims = m.reference.get("claims_us", claims_us)
                reference = raw_run.cpu_us_per_request() + floor + claims
                ratios.append(m.cpu_us_per_request() / reference)
                parts.append((m.cpu_us_per_request(), raw_run.cpu_us_per_request(), floor, claims))
            if not parts:
                continue
            med = [_median(p[i] for p in parts) for i in range(4)]
            source = "right after each run" if r.runs[name][0].reference else "in the micro phase"
            out.append(
                Target(
                    f"uncached {alg} end to end, CPU per request / (raw ASGI + `cryptography` verify + claim checks)",
                    _median(ratios),
                    1.3,
                    False,
                    note=f"medians: {med[0]:.0f} µs / ({med[1]:.0f} + {med[2]:.0f} + {med[3]:.1f}) µs; verify and "
                    f"claim checks timed in-process {source}",
                )
            )
    if run.memory is not None:
        for paced in run.memory.paced:
            if paced.label.startswith("the raw ASGI app"):
                continue  # the floor: in the notes of the others
            out.append(
                Target(
                    f"p99 (ms) at {paced.rate:,.0f} checks/s (50 % of a measured maximum), direct, {paced.label}",
                    paced.figures.get("p99_ms", float("nan")),
                    2.0,
                    False,
                    note=f"sent {paced.figures.get('rate_sent', 0):,.0f}/s, "
                    f"answered {paced.figures.get('answered', 0):,}, "
                    f"errors {sum(paced.figures.get('errors', {}).values())}{_gc_note(paced.figures)}"
                    f"{_floor_note(run.memory.paced)}",
                )
            )
        per_100k = rss_per_100k(run.memory.points)
        if per_100k is not None:
            out.append(
                Target(
                    "RSS per 100,000 cached tokens (MB)",
                    per_100k[0],
                    50.0,
                    False,
                    note=per_100k[1],
                )
            )
    if run.scale is not None:
        s = run.scale
        if 10_000 in s.compile_s:
            out.append(Target("snapshot compile, 10,000 policies, from nothing (s)", s.compile_s[10_000], 1.0, False))
            out.append(
                Target(
                    "snapshot compile, 10,000 policies, one changed since the last (s)",
                    s.recompile_s[10_000],
                    1.0,
                    False,
                    note="what a replica does on a push (policy/reuse.py)",
                )
            )
        biggest = max(s.check_by_policies_us)
        out.append(
            Target(
                f"per-check cost, {biggest:,} policies / 1 policy",
                s.check_by_policies_us[biggest] / s.check_by_policies_us[1],
                1.1,
                False,
                note="“cost the same”: ≤ 1.1 taken as the same, in-process timings are noisy",
            )
        )
        most = max(s.check_by_issuers_us)
        out.append(
            Target(
                f"per-check cost, {most} issuers / 1 issuer",
                s.check_by_issuers_us[most] / s.check_by_issuers_us[1],
                1.1,
                False,
            )
        )
    return out


def _floor_note(paced: list) -> str:
    floor = next((p for p in paced if p.label.startswith("the raw ASGI app")), None)
    if floor is None:
        return ""
    return (
        f"; the same load against the raw ASGI app (the floor): p99 {floor.figures.get('p99_ms', float('nan')):.2f} ms"
    )


def _gc_note(figures: dict) -> str:
    gc = figures.get("gc")
    if not gc:
        return ""
    full, seconds = gc.get("count2", 0), gc.get("sum2", 0.0)
    young = gc.get("count0", 0) + gc.get("count1", 0)
    mean = f", {seconds / full * 1000:.1f} ms each" if full else ""
    return f"; garbage collector during the run: {full:.0f} full passes{mean}, {young:.0f} young ones"


def rss_per_100k(points: list[RssPoint]) -> tuple[float, str] | None:
    """RSS growth per 100,000 *cached* entries between the first and the last point (the
    cache's own gauge says how many it kept: today at most 10,000), and a note."""
    if len(points) < 2 or points[-1].tokens == points[0].tokens:
        return None
    first, last = points[0], points[-1]
    growth = (last.rss_bytes - first.rss_bytes) / 1e6
    entries = last.cached_entries - first.cached_entries
    note = (
        f"{growth:.1f} MB for {last.tokens - first.tokens:,} tokens presented, of which the cache kept {entries:,.0f}"
    )
    if not entries > 0:
        return float("nan"), note
    note += f": {growth * 1e6 / entries:,.0f} bytes of RSS per cached entry, scaled to 100,000"
    return growth * 100_000 / entries, note


def render(run: Run) -> str:
    out: list[str] = []
    add = out.append
    add("# authgate benchmarks")
    add("")
    add(
        f"Written by `{run.command}` on {run.started:%Y-%m-%d %H:%M} UTC in {run.elapsed:.0f} s; "
        "every run overwrites this file and its figures. Absolute numbers depend on the machine and on what "
        "else runs on it (this machine is shared: see the load average and the *others' CPU* column): "
        "compare the ratios, which come from alternating runs of one session."
    )
    add("")
    add(
        "Reproduce: `make bench` (builds Authorino and ghz once into the tools cache, installs matplotlib from the "
        "`bench` extra, then runs `python -m bench` and the exchange and facade benchmarks); `make bench "
        "BENCH_ARGS=--quick` checks the harness in a few minutes (1 round of 3 s, fewer tokens); `python -m bench "
        "--help` lists the options (`--rounds`, `--duration`, `--distinct-tokens`, `--rss-tokens`, `--only`, "
        "`--skip-*`)."
    )
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("|---|---|")
    for key, value in run.machine:
        add(f"| {key} | {value} |")
    add(f"| load average (1, 5, 15 min) | at start {run.load_start}; at end {run.load_end} |")
    if run.rounds is not None:
        others = [m.other_cpu for runs in run.rounds.runs.values() for m in runs]
        if others:
            add(
                f"| other work during the measured runs | median {_median(others):.2f}, max {max(others):.2f} "
                "CPU-seconds per second (of 2 CPUs): above ~0.2 the absolute figures are depressed, trust the "
                "per-CPU ratios |"
            )
    add("")
    for note in run.notes:
        add(f"- {note}")
    if run.notes:
        add("")
    if run.rounds is not None:
        _render_table(add, run)
    targets_list = targets(run)
    if targets_list:
        _render_targets(add, targets_list)
    if run.rounds is not None:
        _render_runs(add, run)
    if run.memory is not None:
        _render_memory(add, run)
    if run.scale is not None:
        _render_scale(add, run.scale)
    if run.micro is not None:
        _render_micro(add, run.micro)
    return "\n".join(out) + "\n"


def _render_table(add, run: Run) -> None:
    r = run.rounds
    assert r is not None
    s = run.settings
    add("## The configurations side by side")
    add("")
    add(
        f"{run.pinning[:1].upper()}{run.pinning[1:]}. {s['rounds']} rounds; in each, every configuration once "
        "in the order below "
        f"({s['warmup']:g} s warm-up, then {s['duration']:g} s measured), so the configurations alternate. "
        f"wrk: 1 thread, {s['connections']} connections, HTTP/1.1 keep-alive; ghz: {s['grpc_concurrency']} concurrent "
        "calls on one HTTP/2 connection, `--cpus 1`. Every request carries the same valid ES256 token (RFC 9068, "
        "`typ: at+jwt`) except the 401 row (none) and the distinct-token rows. authgate is the real `authgate serve` "
        "process with the bench policy (bench/issuer.py: issuer by discovery from a local JWKS server, audience = "
        "resource, `typ` and `sub` required, scope → role, two rules); the baselines run under Uvicorn with "
        "authgate's settings. Envoy (1 worker) answers 200 itself (`direct_response`) after its check. "
        "*server CPU µs/req* is the CPU time (user + system, /proc) the server processes used during the measured "
        "run divided by the requests answered: Envoy and the authorizer apart where both run. Medians over rounds. "
        "Two authgate processes serve the rows: one at the default log level (`info`, a decision line per check, "
        "to a file) for the first authgate row, one at `--log-level warning` for every other authgate row (401, "
        "distinct tokens, gRPC direct, behind Envoy). The distinct-token rows cycle over their token file, each run "
        "going on where the previous one stopped, so the tokens come back only after the cache (10,000 entries "
        "today) has forgotten them: the *cache hits* column of *Every run* shows it. Authorino (bench/authorino.py) "
        "reads an AuthConfig from a real kube-apiserver: the same issuer by discovery, `iss` and `aud` pattern rules "
        "(it checks neither by default), the `mcp:read` scope, the same identity headers; it does not check "
        "`typ: at+jwt` (its rules cannot see the JOSE header). It logs at `error`, like authgate at warning level."
    )
    add("")
    add("| configuration | req/s | server CPU µs/req | p50 ms | p99 ms | runs (req/s) |")
    add("|---|---:|---:|---:|---:|---|")
    for name in TABLE_ROWS:
        label = run.labels.get(name, name)
        measured = r.runs.get(name) or []
        if not measured:
            add(f"| {label} | not measured | | | | |")
            continue
        rps = _median(m.rps for m in measured)
        cpu = _median(m.cpu_us_per_request() for m in measured)
        roles = list(measured[0].cpu)
        split = ""
        if len(roles) > 1:
            split = (
                " ("
                + ", ".join(f"{role} {_median(m.cpu_us_per_request(role) for m in measured):.0f}" for role in roles)
                + ")"
            )
        p50 = _median(m.p50_ms for m in measured)
        p99 = _median(m.p99_ms for m in measured)
        runs = ", ".join(f"{m.rps:,.0f}" for m in measured)
        add(f"| {label} | {rps:,.0f} | {cpu:.1f}{split} | {p50:.2f} | {p99:.2f} | {runs} |")
    extra = [n for n in ("authgate-distinct-rs256", "authgate-distinct-eddsa") if r.runs.get(n)]
    if extra:
        add("")
        add("For the uncached-validation ratios, the same distinct-token run with the other algorithms:")
        add("")
        add("| configuration | req/s | server CPU µs/req | p50 ms | p99 ms |")
        add("|---|---:|---:|---:|---:|")
        for name in extra:
            measured = r.runs[name]
            add(
                f"| {run.labels.get(name, name)} | {_median(m.rps for m in measured):,.0f} | "
                f"{_median(m.cpu_us_per_request() for m in measured):.1f} | "
                f"{_median(m.p50_ms for m in measured):.2f} | "
                f"{_median(m.p99_ms for m in measured):.2f} |"
            )
    add("")
    for name, title in (("throughput", "Requests/s per configuration"), ("latency_cdf", "Latency CDF")):
        if name in run.figures:
            add(f"![{title}]({run.figures[name]})")
            add("")


def _render_targets(add, targets_list: list[Target]) -> None:
    add("## Issue #14's targets, measured in this run")
    add("")
    add(
        "Ratios are medians of per-round ratios (each from runs a few seconds apart). *per server CPU-second*: "
        "the same ratio computed from server CPU per request instead of req/s, robust to other work on the machine "
        "taking CPU 0 from the server."
    )
    add("")
    add("| target | measured | per server CPU-second | bound | verdict | note |")
    add("|---|---:|---:|---:|---|---|")
    for t in targets_list:
        bound = ("≥ " if t.at_least else "≤ ") + f"{t.bound:g}"
        add(f"| {t.what} | {_fmt(t.value, 2)} | {_fmt(t.per_cpu, 2)} | {bound} | {t.verdict} | {t.note} |")
    add("")


def _render_runs(add, run: Run) -> None:
    r = run.rounds
    assert r is not None
    add("### Every run")
    add("")
    add(
        "CPU columns in CPU-seconds per second of wall time: *servers* per process, *load* wrk or ghz, *others* "
        "the rest of the machine (from /proc/stat, minus the servers, the load generator and the bench process). "
        "*others* well above 0 means other work shared the cores and that run's req/s is low; the per-CPU ratios "
        "correct for this to first order. *errors*: non-2xx (all of them in the 401 row) or failed gRPC calls. "
        "*cache hits*: hits / lookups of authgate's verified-token cache during the run (its "
        "`authgate_verified_token_cache_total` counter; empty where authgate is not involved or looked nothing up)."
    )
    add("")
    add("| round | configuration | req/s | p50 ms | p99 ms | errors | cache hits | servers CPU | load CPU | others |")
    add("|---:|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for round_index in range(int(run.settings["rounds"])):
        for name in r.order:
            measured = r.runs[name]
            if round_index >= len(measured):
                continue
            m = measured[round_index]
            cpu = ", ".join(f"{role} {v:.2f}" for role, v in m.cpu.items())
            add(
                f"| {round_index + 1} | {name} | {m.rps:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | {m.errors:,} "
                f"| {_percent(m.cache_hit_ratio)} | {cpu} "
                f"| {m.load_cpu:.2f} | {m.other_cpu:.2f} |"
            )
    add("")


def _render_memory(add, run: Run) -> None:
    m = run.memory
    assert m is not None
    add("## Memory: RSS against distinct valid tokens")
    add("")
    flag = (
        "authgate has `--token-cache-entries`: the cache was sized to the largest N."
        if m.cache_flag
        else "authgate has no `--token-cache-entries` flag yet: the cache keeps its built-in bound (10,000 "
        "entries today), so beyond it RSS measures the bound, not the cost per entry; the harness passes the flag "
        "by itself once it exists."
    )
    add(
        "One fresh authgate process (default log level, decision cache off: these are the verified-token cache's "
        "figures), each token presented once (one check each, 32 keep-alive connections), RSS from "
        "/proc/PID/status after each step, cache entries from authgate's own gauge "
        f"`authgate_verified_token_cache_size`. {flag}"
    )
    add("")
    if m.with_decisions is not None and m.points:
        last = m.points[-1]
        extra = (m.with_decisions.rss_bytes - last.rss_bytes) / 2**20
        add(
            f"The decision cache, bounded apart (`--decision-cache-entries`, default 10,000): a second process as "
            f"deployed (decision cache on), shown the same {last.tokens:,} tokens, has RSS "
            f"{m.with_decisions.rss_bytes / 2**20:.1f} MiB, {extra:+.1f} MiB over the first: what its decision cache "
            "holds, at its bound (two processes: ±2 MiB)."
        )
        add("")
    add("| distinct tokens presented | RSS (MiB) | cache entries | RSS over N = 0 (MiB) |")
    add("|---:|---:|---:|---:|")
    base = m.points[0].rss_bytes if m.points else 0
    for p in m.points:
        add(
            f"| {p.tokens:,} | {p.rss_bytes / 2**20:.1f} | {p.cached_entries:,.0f} | "
            f"{(p.rss_bytes - base) / 2**20:.1f} |"
        )
    add("")
    if "rss" in run.figures:
        add(f"![RSS against cached tokens]({run.figures['rss']})")
        add("")
    if m.paced:
        add("### p99 under a paced load at 50 % of the maximum rate")
        add("")
        tool = m.paced[0].figures.get("tool", "bench/paced_load.py")
        add(
            f"{tool} (open loop: check i is due at start + i / rate whatever happened before, 32 connections at "
            "most), pinned to the load CPU, against a process as deployed (decision cache on); the maximum rate is "
            "the median req/s of the *cached valid token, default log level* row of this run, and for the last row "
            "that of the same load unpaced (vegeta `-rate 0`). The first row is the "
            "same load against the raw ASGI app, which answers without doing anything: the floor this machine and "
            "load generator reach at that moment."
        )
        add("")
        add("| server and tokens | rate offered | rate sent | answered | errors | p50 ms | p99 ms |")
        add("|---|---:|---:|---:|---:|---:|---:|")
        for paced in m.paced:
            f = paced.figures
            add(
                f"| {paced.label} | {paced.rate:,.0f} | {f.get('rate_sent', 0):,.0f} | {f.get('answered', 0):,} | "
                f"{sum(f.get('errors', {}).values())} | {f.get('p50_ms', float('nan')):.2f} | "
                f"{f.get('p99_ms', float('nan')):.2f} |"
            )
        add("")


def _render_scale(add, s: ScaleResult) -> None:
    add("## Scale: snapshot compile and per-check cost against policies and issuers")
    add("")
    add(
        "In-process (bench/scale.py). Compile: `compile_document` on a snapshot document of N copies of the bench "
        "policy on distinct hosts (what each replica runs on an admin PUT): from nothing, and again after one "
        "policy changed (the other policies are reused from the compile before, policy/reuse.py). "
        "Per check: `AuthService.check`, cached "
        "ES256 token, decision log off, µs per check (best of 5), the request to the last policy; extra issuers "
        "come before the token's issuer in the policy."
    )
    add("")
    add("| policies | compile from nothing (s) | compile, one changed (s) | µs per check |")
    add("|---:|---:|---:|---:|")
    for count in sorted(s.compile_s):
        per_check = _fmt(s.check_by_policies_us.get(count, float("nan")))
        add(f"| {count:,} | {s.compile_s[count]:.3f} | {s.recompile_s[count]:.3f} | {per_check} |")
    add("")
    add("| issuers in the policy | µs per check |")
    add("|---:|---:|")
    for count in sorted(s.check_by_issuers_us):
        add(f"| {count} | {s.check_by_issuers_us[count]:.1f} |")
    add("")


def _render_micro(add, m: MicroResult) -> None:
    add("## Token validation (in-process, µs per token, best of 5)")
    add("")
    add(
        "One RFC 9068 access token per algorithm (sizes in the table), keys already loaded "
        "into a `KeyStore` from the local JWKS "
        "server. *floor*: `cryptography` verify of the token's signing input with the same "
        "public key (ES256: signature DER-encoded once, outside the loop). *authgate "
        "uncached*: `TokenValidator.validate` with a `VerifiedTokenCache(max_entries=0)`, so "
        "every call parses, looks up the key, verifies, checks the claims and misses the "
        "cache, as for a token seen for the first time. *authgate cached*: a cache hit. "
        "*jwcrypto*: `jwt.JWT(jwt=token, key=jwk, algs=[alg], expected_type='JWS', "
        "check_claims={iss, aud, exp})`."
    )
    add("")
    add(
        "| alg (token bytes) | floor | authgate uncached | authgate cached | jwcrypto `JWT()` "
        "| authgate - floor | jwcrypto / authgate uncached |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|")
    for row in m.rows:
        add(
            f"| {row.alg} ({row.token_bytes}) | {row.floor_us:.1f} | {row.uncached_us:.1f} | {row.cached_us:.1f} | "
            f"{row.jwcrypto_us:.1f} | {row.uncached_us - row.floor_us:.1f} | "
            f"{row.jwcrypto_us / row.uncached_us:.2f}x |"
        )
    add("")
    add(
        "The whole decision in-process (`AuthService.check`: route, rule, cached ES256 "
        "token, roles, identity headers, metrics, decision log), µs per check:"
    )
    add("")
    add("| decision log | µs per check |")
    add("|---|---:|")
    add(f"| off (`--log-level warning`) | {m.check_quiet_us:.1f} |")
    add(f"| on (`info`, JSON formatter, in-memory stream) | {m.check_logged_us:.1f} |")
    add("")
    counts = ", ".join(f"{name} {count:,}" for name, count in m.iterations.items())
    add(
        f"Claim checks by hand (split, base64url and JSON decode of header and payload, typ, alg, iss, aud, exp, "
        f"nbf, sub): {m.claim_checks_us:.1f} µs, the third term of the uncached-validation reference."
    )
    add("")
    add(f"Iterations per repeat (auto-ranged to ≥ 0.2 s): {counts}.")
    add("")
