"""Machine facts and the Markdown of bench/REPORT.md."""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bench.micro import MicroResult
from bench.throughput import WrkResult

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


@dataclass
class ThroughputResult:
    pinning: str
    duration: float
    warmup: float
    connections: int
    rounds: int
    order: list[str]
    runs: list[tuple[int, str, WrkResult]]  # (round, target name, result)
    decisions_logged: int | None  # decision lines written by the info-level authgate
    requests_sent_info: int | None  # requests wrk completed against it (warm-ups included)
    log_bytes: int | None

    def rps(self, name: str) -> list[float]:
        return [result.rps for _, target, result in self.runs if target == name]

    def median(self, name: str) -> float:
        return statistics.median(self.rps(name))

    def round_rps(self, round_no: int, name: str, per_cpu: bool = False) -> float:
        result = next(r for n, target, r in self.runs if n == round_no and target == name)
        return result.rps / result.server_cpu if per_cpu else result.rps

    def per_cpu(self, name: str) -> float:
        """Median requests per CPU-second the server itself used: robust to other work on the machine."""
        values = [r.rps / r.server_cpu for _, target, r in self.runs if target == name and r.server_cpu > 0]
        return statistics.median(values) if values else float("nan")


LABELS = {
    "authgate": "authgate `/ext-authz/nginx`, `--log-level warning`",
    "authgate-info": "authgate `/ext-authz/nginx`, `--log-level info` (decision log on)",
    "starlette-lambda": "Starlette `Route('/', lambda r: PlainTextResponse('ok'))`",
    "starlette-async": "Starlette `async def` route returning `PlainTextResponse('ok')`",
}


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"  # NaN check


def render(
    started: datetime.datetime,
    elapsed: float,
    command: str,
    machine: list[tuple[str, str]],
    load_start: str,
    load_end: str,
    throughput: ThroughputResult | None,
    micro: MicroResult | None,
) -> str:
    out: list[str] = []
    add = out.append
    add("# authgate benchmarks")
    add("")
    add(
        f"Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s; "
        "every run overwrites this file. Absolute numbers depend on the machine and on what "
        "else runs on it: compare the ratios, which come from alternating runs of one session."
    )
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("|---|---|")
    for key, value in machine:
        add(f"| {key} | {value} |")
    add(f"| load average (1, 5, 15 min) | at start {load_start}; at end {load_end} |")
    add("")
    if throughput is not None:
        _render_throughput(add, throughput)
    if micro is not None:
        _render_micro(add, micro)
    return "\n".join(out) + "\n"


def _render_throughput(add, t: ThroughputResult) -> None:
    add("## Throughput: authgate's check port against a bare Starlette route")
    add("")
    add(
        f"wrk {t.connections} connections, 1 thread, {t.duration:g} s per run after a "
        f"{t.warmup:g} s warm-up, {t.rounds} rounds in the order {', '.join(t.order)} "
        f"(so each server alternates with the others); {t.pinning}. Every request carries "
        "`X-Original-URL`, `X-Original-Method` and `Authorization: Bearer <ES256 token>` "
        "(a Lua script), also to Starlette, which ignores them. authgate is the real "
        "`authgate serve` process (one process, all four ports) with one policy whose "
        "issuer is a local discovery + JWKS server; the token is valid, so every answer is "
        "a 200 allow with identity headers, served from the verified-token cache after the "
        "first request. Starlette runs under Uvicorn with authgate's settings (httptools, "
        "uvloop, no access log, no lifespan, one worker)."
    )
    add("")
    busy = statistics.median(r.other_cpu for _, _, r in t.runs)
    if busy > 0.25:
        add(
            f"**Note: other work used a median {busy:.2f} CPU-seconds per second during these runs "
            '(column "others\' CPU" below): absolute req/s are depressed and noisier; the per '
            "CPU-second columns hold up better. Rerun on a quiet machine for reference figures.**"
        )
        add("")
    add(
        "| server | median req/s | runs (req/s) | authgate / this | median req per server CPU-second "
        "| authgate / this, per CPU-second |"
    )
    add("|---|---:|---|---:|---:|---:|")
    base, base_cpu = t.median("authgate"), t.per_cpu("authgate")
    for name in t.order:
        values = ", ".join(f"{v:,.0f}" for v in t.rps(name))
        add(
            f"| {LABELS[name]} | {t.median(name):,.0f} | {values} | {base / t.median(name):.2f} "
            f"| {_fmt(t.per_cpu(name), 0)} | {_fmt(base_cpu / t.per_cpu(name), 2)} |"
        )
    add("")
    lam, asy, info = t.median("starlette-lambda"), t.median("starlette-async"), t.median("authgate-info")
    lam_cpu, asy_cpu, info_cpu = t.per_cpu("starlette-lambda"), t.per_cpu("starlette-async"), t.per_cpu("authgate-info")
    add(
        f"- **authgate / Starlette (lambda route, as specified): {base / lam:.2f}** "
        f"(per server CPU-second: {_fmt(base_cpu / lam_cpu, 2)})"
    )
    add(
        f"- authgate / Starlette (`async def` route): {base / asy:.2f} (per server CPU-second: "
        f"{_fmt(base_cpu / asy_cpu, 2)}). Starlette runs a plain "
        "function endpoint such as the lambda in its thread pool (`run_in_threadpool`); the "
        "`async def` route is the like-for-like peer of authgate's check app, which never "
        "leaves the event loop."
    )
    per_request = (1 / info_cpu - 1 / base_cpu) * 1e6
    add(
        f"- Decision log (`--log-level info`, the default): {info:,.0f} req/s, "
        f"{info / base:.2f}x the warning-level rate ({_fmt(info_cpu / base_cpu, 2)}x per server "
        f"CPU-second), i.e. about {_fmt(per_request, 0)} µs of server CPU per request for one JSON "
        "log line written to a file."
    )
    add(
        "- Server CPU per request (1 / median requests per server CPU-second): authgate "
        f"{_fmt(1e6 / base_cpu, 0)} µs at warning level, {_fmt(1e6 / info_cpu, 0)} µs at info; "
        f"Starlette {_fmt(1e6 / asy_cpu, 0)} µs (`async def`), {_fmt(1e6 / lam_cpu, 0)} µs (lambda)."
    )
    if t.decisions_logged is not None and t.requests_sent_info is not None:
        per_line = (t.log_bytes or 0) / max(t.decisions_logged, 1)
        add(
            f"- The info-level server wrote {t.decisions_logged:,} decision lines "
            f"(~{per_line:.0f} bytes each, to a file) for {t.requests_sent_info:,} responses "
            "wrk counted (warm-ups included; wrk does not count the requests still in flight "
            "when it stops)."
        )
    add("")
    add(
        "Paired ratios, round by round (each from runs a few seconds apart, so a slow "
        "stretch of the machine hits both sides alike):"
    )
    add("")
    pairs = [
        ("authgate / Starlette lambda", "authgate", "starlette-lambda"),
        ("authgate / Starlette `async def`", "authgate", "starlette-async"),
        ("authgate info / authgate warning", "authgate-info", "authgate"),
    ]
    rounds = sorted({round_no for round_no, _, _ in t.runs})
    add("| ratio | " + " | ".join(f"round {r}" for r in rounds) + " | median |")
    add("|---|" + "---:|" * (len(rounds) + 1))
    for per_cpu in (False, True):
        for label, a, b in pairs:
            values = [t.round_rps(r, a, per_cpu) / t.round_rps(r, b, per_cpu) for r in rounds]
            cells = " | ".join(f"{v:.2f}" for v in values)
            suffix = ", per server CPU-second" if per_cpu else ""
            add(f"| {label}{suffix} | {cells} | **{statistics.median(values):.2f}** |")
    add("")
    add("Every run (p50 / p99 latency as wrk reports them; CPU columns in CPU-seconds per second):")
    add("")
    add("| round | server | req/s | p50 ms | p99 ms | non-2xx | socket errors | server CPU | wrk CPU | others' CPU |")
    add("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for round_no, name, r in t.runs:
        add(
            f"| {round_no} | {name} | {r.rps:,.0f} | {_fmt(r.p50_ms, 2)} | {_fmt(r.p99_ms, 2)} | "
            f"{r.non_2xx} | {r.socket_errors} | {_fmt(r.server_cpu, 2)} | {_fmt(r.wrk_cpu, 2)} | "
            f"{_fmt(r.other_cpu, 2)} |"
        )
    add("")
    add(
        '"server CPU" near 1.00 means the one-process server saturated its core. "others\' CPU" '
        "is what the rest of the machine used during the run (from /proc/stat, minus the server, "
        "wrk and the bench process): well above 0 means other work shared the cores, the server "
        "may have had less than a core and that run's req/s is low; requests per server "
        "CPU-second correct for this to first order."
    )
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
    add(f"Iterations per repeat (auto-ranged to ≥ 0.2 s): {counts}.")
    add("")
