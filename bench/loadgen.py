"""wrk (HTTP/1.1) and ghz (gRPC) runs, their parsed output, and where the CPU time went.

One `Load` is what a configuration sends; `run` drives it once and returns a `Measured`:
requests/s, p50/p99, a latency CDF, and the CPU-seconds each server process used during the
run (Envoy and the authorizer apart), so per-request CPU is accounted per process.

wrk's own `--latency` output gives four percentiles; the Lua `done()` hook written here prints
many more (`CDF <percentile> <µs>` lines), which the latency-CDF plot uses. ghz writes JSON
(`-O json`): its `latencyDistribution` and `histogram` give the same.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CDF_POINTS = (1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97.5, 99, 99.5, 99.9)


@dataclass
class Measured:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx (wrk), or calls that failed (ghz)
    cdf: list[tuple[float, float]] = field(default_factory=list)  # (percentile, ms)
    cpu: dict[str, float] = field(default_factory=dict)  # role -> CPU-seconds per second of wall time
    load_cpu: float = float("nan")  # the load generator's
    other_cpu: float = float("nan")  # the rest of the machine's
    statuses: dict[str, int] = field(default_factory=dict)
    cache: dict[str, float] = field(default_factory=dict)  # authgate's verified-token cache lookups, by result
    reference: dict[str, float] = field(default_factory=dict)  # distinct-token rows: floor_us, claims_us just after

    @property
    def cache_hit_ratio(self) -> float:
        lookups = sum(self.cache.values())
        return self.cache.get("hit", 0.0) / lookups if lookups else float("nan")

    @property
    def server_cpu(self) -> float:
        return sum(self.cpu.values())

    def cpu_us_per_request(self, role: str | None = None) -> float:
        """Server CPU µs per request: every server process, or one role."""
        used = self.server_cpu if role is None else self.cpu.get(role, float("nan"))
        return used / self.rps * 1e6 if self.rps > 0 else float("nan")


# --- wrk ---------------------------------------------------------------------------------


def wrk_script(headers: Mapping[str, str], tokens_file: Path | None = None, method: str = "GET") -> str:
    """A wrk Lua script: fixed headers; with `tokens_file` (one token a line) each request
    carries the next token as `Authorization: Bearer`, cycling; `done()` prints the CDF."""
    lines = [f'wrk.method = "{method}"']
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    if tokens_file is not None:
        lines += [
            "local tokens = {}",
            f'for line in io.lines("{tokens_file}") do tokens[#tokens + 1] = line end',
            # where the previous run of this script stopped (bench/table.py counts), so a run
            # goes on with the tokens least recently used instead of the ones just cached
            'local i = tonumber(os.getenv("BENCH_TOKEN_OFFSET") or "0") % #tokens',
            "request = function()",
            "  i = i % #tokens + 1",
            '  wrk.headers["Authorization"] = "Bearer " .. tokens[i]',
            "  return wrk.format()",
            "end",
        ]
    points = ", ".join(str(p) for p in CDF_POINTS)
    lines += [
        "done = function(summary, latency, requests)",
        f"  for _, p in ipairs({{{points}}}) do",
        '    io.write(string.format("CDF %g %d\\n", p, latency:percentile(p)))',
        "  end",
        "end",
    ]
    return "\n".join(lines) + "\n"


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_latency_ms(text: str, percentile: str) -> float:
    match = re.search(rf"^\s*{re.escape(percentile)}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    return float(match.group(1)) * _UNITS_MS[match.group(2)] if match else float("nan")


def parse_wrk(text: str) -> Measured:
    """wrk 4.x output with `--latency` (and the CDF lines of `wrk_script`)."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    requests = re.search(r"^\s*(\d+) requests in", text, re.MULTILINE)
    if not rps or not requests:
        raise ValueError(f"cannot parse wrk output:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    cdf = [(float(p), int(us) / 1000) for p, us in re.findall(r"^CDF ([\d.]+) (\d+)$", text, re.MULTILINE)]
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(g) for g in socket_errors.groups()) if socket_errors else 0
    )
    return Measured(
        rps=float(rps.group(1)),
        requests=int(requests.group(1)),
        p50_ms=_wrk_latency_ms(text, "50"),
        p99_ms=_wrk_latency_ms(text, "99"),
        errors=errors,
        cdf=cdf,
    )


# --- ghz ---------------------------------------------------------------------------------


def parse_ghz(text: str) -> Measured:
    """ghz's `-O json` report. Latencies there are in nanoseconds; `statusCodeDistribution`
    counts gRPC status names; `rps` counts every call, answered or failed."""
    try:
        report = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"cannot parse ghz output: {error}: {text[:2000]}") from None
    distribution = {
        float(entry["percentage"]): entry["latency"] / 1e6 for entry in report.get("latencyDistribution") or []
    }
    statuses = {str(k): int(v) for k, v in (report.get("statusCodeDistribution") or {}).items()}
    errors = sum(v for k, v in statuses.items() if k != "OK")
    if report.get("endReason") == "timeout":
        # ghz closes its connection when -z ends: the calls then in flight fail, not the server
        errors -= sum(
            int(n)
            for message, n in (report.get("errorDistribution") or {}).items()
            if "closed network connection" in message or "closing" in message
        )
    return Measured(
        rps=float(report["rps"]),
        requests=int(report["count"]),
        p50_ms=distribution.get(50.0, float("nan")),
        p99_ms=distribution.get(99.0, float("nan")),
        errors=errors,
        cdf=sorted(distribution.items()),
        statuses=statuses,
    )


# --- CPU accounting ------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds (NaN once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_bytes(pid: int) -> int:
    """Resident set size from /proc/PID/status (VmRSS)."""
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    if not match:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return int(match.group(1)) * 1024


def machine_busy() -> float:
    """CPU-seconds the whole machine has been busy (not idle, not iowait) since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Load:
    """What one configuration sends: `kind` "wrk" (url, script) or "ghz" (address, call,
    protoset, data), and the server processes to account (role -> pid)."""

    kind: str
    pids: dict[str, int]
    url: str = ""
    script: Path | None = None
    address: str = ""
    call: str = ""
    protoset: Path | None = None
    data_file: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # for the load generator (wrk: BENCH_TOKEN_OFFSET)


def command(load: Load, seconds: float, connections: int, prefix: Sequence[str], ghz: str | None) -> list[str]:
    if load.kind == "wrk":
        assert load.script is not None
        return [
            *prefix,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(load.script),
            load.url,
        ]
    if ghz is None:
        raise RuntimeError("ghz is not built: run `hack/tools/build.sh ghz` (`make bench` does)")
    assert load.protoset is not None and load.data_file is not None
    args = [
        *prefix,
        ghz,
        "--insecure",
        "--protoset",
        str(load.protoset),
        "--call",
        load.call,
        "-D",
        str(load.data_file),
        "-c",
        str(connections),
        "--connections",
        "1",
        "-z",
        f"{max(1, round(seconds))}s",
        "--cpus",
        "1",
        "-O",
        "json",
    ]
    if load.metadata:
        args += ["-m", json.dumps(load.metadata)]
    return [*args, load.address]


def run(load: Load, seconds: float, connections: int, prefix: Sequence[str], ghz: str | None = None) -> Measured:
    """One measured run of `load`; the CPU each server process used over its wall time."""
    args = command(load, seconds, connections, prefix, ghz)
    before_pids = {role: process_cpu(pid) for role, pid in load.pids.items()}
    before = (machine_busy(), _children_cpu(), _self_cpu(), time.monotonic())
    env = {**os.environ, **load.env} if load.env else None
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120, check=False, env=env)
    after = (machine_busy(), _children_cpu(), _self_cpu(), time.monotonic())
    after_pids = {role: process_cpu(pid) for role, pid in load.pids.items()}
    if done.returncode != 0 and not done.stdout.strip():
        raise RuntimeError(f"{args[len(prefix)]} failed ({done.returncode}): {done.stderr[-2000:]}")
    measured = parse_wrk(done.stdout) if load.kind == "wrk" else parse_ghz(done.stdout)
    busy, children, own, wall = (b - a for a, b in zip(before, after, strict=True))
    measured.cpu = {role: (after_pids[role] - before_pids[role]) / wall for role in load.pids}
    measured.load_cpu = children / wall
    servers = sum(v for v in measured.cpu.values() if not math.isnan(v))
    measured.other_cpu = max(0.0, (busy - servers - children - own) / wall)
    return measured
