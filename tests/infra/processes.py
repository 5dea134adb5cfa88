"""Run a real server process for a test: start, wait until ready, stop for sure.

Output (stdout and stderr together) goes straight to a log file, so a chatty
process can never block on a full pipe and a failure shows the log's tail.

    with Process("idp", ["node", "server.mjs", cfg], log_dir=tmp_path) as idp:
        idp.wait_ready(LinePrefix("READY "), timeout=30)
        ...

Each process gets its own session (process group): stopping it signals the
whole group (nginx workers included), SIGTERM first, then SIGKILL. Processes
still running when the interpreter exits are stopped too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

_running: weakref.WeakSet[Process] = weakref.WeakSet()


class ProcessError(RuntimeError):
    """A process failed to start, died, or did not become ready in time."""


class ReadyCondition(Protocol):
    def check(self, process: Process) -> str | None:
        """A description of readiness (e.g. the matched line) once ready, else None."""


@dataclass(frozen=True)
class LinePrefix:
    """Ready once the output has a line starting with `prefix`; returns that line."""

    prefix: str

    def check(self, process: Process) -> str | None:
        for line in process.read_log().splitlines():
            if line.startswith(self.prefix):
                return line
        return None


@dataclass(frozen=True)
class TcpPort:
    """Ready once `host:port` accepts a TCP connection."""

    port: int
    host: str = "127.0.0.1"

    def check(self, process: Process) -> str | None:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return f"{self.host}:{self.port} accepts connections"
        except OSError:
            return None


@dataclass(frozen=True)
class HttpUrl:
    """Ready once `url` answers; with `statuses`, only with one of those statuses."""

    url: str
    statuses: frozenset[int] | None = None
    verify: ssl.SSLContext | bool = True

    def check(self, process: Process) -> str | None:
        try:
            response = httpx.get(self.url, timeout=1.0, verify=self.verify, trust_env=False)
        except httpx.HTTPError:
            return None
        if self.statuses is not None and response.status_code not in self.statuses:
            return None
        return f"{self.url} answered {response.status_code}"


class Process:
    """One child process with its log file.

    Attributes: `name`, `args`, `log_path`, `popen` (after `start()`), `ready_info`
    (what the ready condition returned).
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str | os.PathLike[str]],
        *,
        log_dir: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        """`env` replaces the environment (default: this process's); `extra_env` adds to it."""
        self.name = name
        self.args = [os.fspath(arg) for arg in args]
        self.log_path = Path(log_dir) / f"{name}.log"
        self.env = {**(os.environ if env is None else env), **(extra_env or {})}
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None
        self.ready_info: str | None = None

    def start(self, ready: ReadyCondition | None = None, *, timeout: float = 30.0) -> Process:
        """Start the process; with `ready`, also wait for it (see `wait_ready`)."""
        if self.popen is not None:
            raise ProcessError(f"{self.name}: already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            log.write(f"$ {' '.join(self.args)}\n".encode())
            log.flush()
            try:
                self.popen = subprocess.Popen(
                    self.args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
            except OSError as error:
                raise ProcessError(f"{self.name}: cannot start {self.args[0]}: {error}") from error
        _running.add(self)
        if ready is not None:
            self.wait_ready(ready, timeout=timeout)
        return self

    def wait_ready(self, ready: ReadyCondition, *, timeout: float = 30.0) -> str:
        """Poll `ready` until it holds; raise `ProcessError` with the log tail if the
        process exits first or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            info = ready.check(self)
            if info is not None:
                self.ready_info = info
                return info
            if not self.running:
                raise ProcessError(f"{self.name} exited with {self.returncode} before it was ready\n" + self.log_tail())
            if time.monotonic() > deadline:
                self.stop()
                load = " ".join(f"{n:.1f}" for n in os.getloadavg())
                raise ProcessError(
                    f"{self.name} not ready after {timeout:.0f}s ({ready}; load average {load})\n" + self.log_tail()
                )
            time.sleep(0.02)

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        tail = self.read_log().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after `timeout` seconds; returns the exit code."""
        if self.popen is None:
            return None
        _running.discard(self)
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout)
        # Children left behind in the group (e.g. workers) go too.
        self._signal_group(signal.SIGKILL)
        return self.popen.returncode

    def _signal_group(self, signum: int) -> None:
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signum)  # the group id is the child's pid (new session)

    def __enter__(self) -> Process:
        if self.popen is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Process({self.name!r}, pid={self.pid}, running={self.running})"


@atexit.register
def _stop_leftovers() -> None:
    for process in list(_running):
        process.stop(timeout=2.0)
