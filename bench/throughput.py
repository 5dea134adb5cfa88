"""wrk against authgate's check port and against a bare Starlette route, alternating.

Servers are pinned to CPU 0 and wrk to CPU 1 (`taskset`) when the machine has two or
more CPUs, so the load generator and the server do not trade places on one core.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.infra.ports import free_port

from bench.issuer import CHECK_URL
from bench.loadgen import Measured, parse_wrk

ROOT = Path(__file__).resolve().parents[1]
AUTHGATE = str(Path(sys.executable).with_name("authgate"))


@dataclass
class Target:
    """One server under test: its name, URL, the process and its log."""

    name: str
    url: str
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def pinning() -> tuple[list[str], list[str], str]:
    """(server prefix, wrk prefix, description)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2 and shutil.which("taskset"):
        server, load = cpus[0], cpus[1]
        return (
            ["taskset", "-c", str(server)],
            ["taskset", "-c", str(load)],
            f"servers pinned to CPU {server}, wrk to CPU {load} (taskset)",
        )
    return [], [], "no CPU pinning (fewer than 2 CPUs or no taskset)"


def _wait_http(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 30.0, **kwargs) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0, trust_env=False, **kwargs).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url}: not ready after {timeout}s\n{log_path.read_text()[-3000:]}")


def start_authgate(
    name: str, policy_file: Path, work_dir: Path, log_level: str, prefix: Sequence[str], token: str
) -> Target:
    port, check_port, admin_port, metrics_port = (free_port() for _ in range(4))
    command = [
        *prefix,
        AUTHGATE,
        "--log-level",
        log_level,
        "serve",
        "--policy",
        str(policy_file),
        "--address",
        "127.0.0.1",
        "--port",
        str(port),
        "--check-port",
        str(check_port),
        "--admin-port",
        str(admin_port),
        "--metrics-port",
        str(metrics_port),
        "--insecure-http",
        "--egress-allow",
        "127.0.0.1",
    ]
    log_path = work_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    target = Target(name, f"http://127.0.0.1:{check_port}/ext-authz/nginx", process, log_path)
    try:
        _wait_http(f"http://127.0.0.1:{admin_port}/readyz", process, log_path)
        # The keys are fetched in the background after start: wait for a real allow.
        deadline = time.monotonic() + 15
        while True:
            response = httpx.get(target.url, headers=check_headers(token), timeout=5, trust_env=False)
            if response.status_code == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: check answered {response.status_code} {response.text}")
            time.sleep(0.1)
        if response.headers.get("x-auth-subject") != "bench-user":
            raise RuntimeError(f"{name}: allow without the identity headers: {dict(response.headers)}")
    except BaseException:
        target.stop()
        raise
    return target


def start_starlette(work_dir: Path, prefix: Sequence[str]) -> list[Target]:
    """One bare Starlette process, measured through its two routes (see bench/baseline.py)."""
    port = free_port()
    log_path = work_dir / "starlette.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "bench.baseline", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    targets = [
        Target("starlette-lambda", f"http://127.0.0.1:{port}/", process, log_path),
        Target("starlette-async", f"http://127.0.0.1:{port}/async", process, log_path),
    ]
    try:
        for target in targets:
            _wait_http(target.url, process, log_path)
    except BaseException:
        targets[0].stop()
        raise
    return targets


def check_headers(token: str) -> dict[str, str]:
    return {"X-Original-URL": CHECK_URL, "X-Original-Method": "POST", "Authorization": f"Bearer {token}"}


def write_lua(path: Path, token: str) -> Path:
    lines = [f'wrk.headers["{name}"] = "{value}"' for name, value in check_headers(token).items()]
    path.write_text('wrk.method = "GET"\n' + "\n".join(lines) + "\n")
    return path


def run_wrk(
    target: Target,
    script: Path,
    prefix: Sequence[str],
    duration: float,
    connections: int = 32,
    threads: int = 1,
) -> Measured:
    """One wrk run against `target` (the soak's; the report's rows run through bench/loadgen.py)."""
    command = [
        *prefix,
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "-s",
        str(script),
        target.url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    return parse_wrk(done.stdout)


def count_decisions(log_path: Path) -> int:
    count = 0
    with open(log_path, "rb") as log:
        for line in log:
            if b'"logger":"authgate.decision"' in line:
                count += 1
    return count
