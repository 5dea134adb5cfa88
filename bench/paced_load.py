"""A paced (open-loop) HTTP/1.1 load generator, bounded in count and time, loopback only.

Check i is due at start + i / rate, whatever happened to the checks before it, so a slow
or restarting server shows up as errors and latency, not as a lower offered rate. At most
`--connections` checks are in flight (one keep-alive connection each). Raw asyncio streams,
not httpx: a Python HTTP client costs ~10x more CPU per request, and on a 2-core machine
the generator would then measure itself (wrk cannot pace, and cannot say which check failed).

    python -m bench.paced_load --url http://127.0.0.1:8000/mcp/tools --host mcp.example.com \
        --requests requests.json --rate 250 --min-seconds 20 --max-seconds 45 \
        [--stop-file F] --out figures.json

`requests.json` is a list of {"kind": str, "headers": {name: value}}; check i sends entry
i mod len. The figures name kinds and statuses only: never a header value (tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

READ_TIMEOUT = 10.0


@dataclass
class Window:
    """The checks that began in one window: latencies of the answered ones, failures counted."""

    latencies: list[float] = field(default_factory=list)
    checks: int = 0
    errors: int = 0
    server_errors: int = 0


@dataclass
class Run:
    rate: float
    max_count: int
    min_seconds: float
    max_seconds: float
    stop_file: Path | None
    requests: list[tuple[str, bytes]]
    window: float = 10.0
    windows: dict[int, Window] = field(default_factory=dict)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    next_index: int = 0
    start: float = 0.0
    stopped: bool = False

    def record(self, began: float, kind: str, status: int) -> None:
        """status 0: a connection error or timeout."""
        window = self.windows.setdefault(int((began - self.start) // self.window), Window())
        window.checks += 1
        if status == 0:
            window.errors += 1
        else:
            window.latencies.append(time.monotonic() - began)
            window.server_errors += status >= 500
        self.statuses.setdefault(kind, Counter())[status] += 1

    def take(self) -> int | None:
        """The next check's index, or None when the run is over."""
        elapsed = time.monotonic() - self.start
        if self.next_index >= self.max_count or elapsed >= self.max_seconds:
            return None
        if elapsed >= self.min_seconds and (self.stop_file is None or self.stopped):
            return None
        index = self.next_index
        self.next_index += 1
        return index


def build_requests(path: str, host: str, entries: list[dict]) -> list[tuple[str, bytes]]:
    built = []
    for entry in entries:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in entry.get("headers", {}).items()]
        built.append((entry["kind"], ("\r\n".join(lines) + "\r\n\r\n").encode()))
    return built


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, the server will close the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip().lower()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                break
            await reader.readexactly(size + 2)
    return status, headers.get("connection") == "close"


async def worker(run: Run, host: str, port: int) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while (index := run.take()) is not None:
        delay = run.start + index / run.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        kind, request = run.requests[index % len(run.requests)]
        run.sent += 1
        began = time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), READ_TIMEOUT)
            assert reader is not None
            writer.write(request)
            status, close = await asyncio.wait_for(read_response(reader), READ_TIMEOUT)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as error:
            run.errors[type(error).__name__] += 1
            run.record(began, kind, 0)
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        run.record(began, kind, status)
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def watch_stop_file(run: Run) -> None:
    while not run.stopped and run.stop_file is not None:
        run.stopped = run.stop_file.exists()
        await asyncio.sleep(0.1)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def figures(run: Run, seconds: float) -> dict:
    windows = []
    for number in sorted(run.windows):
        window = run.windows[number]
        windows.append(
            {
                "start_s": number * run.window,
                "checks": window.checks,
                "errors": window.errors,
                "5xx": window.server_errors,
                "p50_ms": round(percentile(window.latencies, 0.50) * 1000, 2),
                "p99_ms": round(percentile(window.latencies, 0.99) * 1000, 2),
            }
        )
    every = [latency for window in run.windows.values() for latency in window.latencies]
    answered = {kind: sum(n for status, n in c.items() if status) for kind, c in run.statuses.items()}
    count = Counter()
    for c in run.statuses.values():
        count.update(c)
    return {
        "rate_offered": run.rate,
        "seconds": round(seconds, 2),
        "sent": run.sent,
        "rate_sent": round(run.sent / seconds, 1) if seconds else 0.0,
        "answered": sum(answered.values()),
        "answered_2xx": sum(n for status, n in count.items() if 200 <= status < 300),
        "answered_5xx": sum(n for status, n in count.items() if status >= 500),
        "errors": dict(run.errors),
        "statuses": {kind: {str(k): v for k, v in sorted(c.items())} for kind, c in run.statuses.items()},
        "p50_ms": round(percentile(every, 0.50) * 1000, 2),
        "p99_ms": round(percentile(every, 0.99) * 1000, 2),
        "windows": windows,
    }


async def run_load(
    url: str,
    host: str,
    entries: list[dict],
    *,
    rate: float,
    min_seconds: float,
    max_seconds: float,
    connections: int = 32,
    stop_file: Path | None = None,
    window: float = 10.0,
) -> dict:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None or not ipaddress.ip_address(parts.hostname).is_loopback:
        raise SystemExit("paced_load sends to http://<loopback address> only")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    run = Run(
        rate=rate,
        max_count=int(rate * max_seconds),
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        stop_file=stop_file,
        requests=build_requests(path or "/", host, entries),
        window=window,
    )
    run.start = time.monotonic()
    watcher = asyncio.create_task(watch_stop_file(run))
    await asyncio.gather(*(worker(run, parts.hostname, parts.port or 80) for _ in range(connections)))
    seconds = time.monotonic() - run.start
    watcher.cancel()
    return figures(run, seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--host", required=True, help="the Host header")
    parser.add_argument("--requests", required=True, type=Path)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--min-seconds", type=float, required=True)
    parser.add_argument("--max-seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--stop-file", type=Path, help="after --min-seconds, stop once this file exists")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per latency window")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        import uvloop  # Uvicorn's loop; a cheaper generator leaves more CPU to what is measured

        uvloop.install()
    except ImportError:
        pass
    entries = json.loads(args.requests.read_text())
    result = asyncio.run(
        run_load(
            args.url,
            args.host,
            entries,
            rate=args.rate,
            min_seconds=args.min_seconds,
            max_seconds=args.max_seconds,
            connections=args.connections,
            stop_file=args.stop_file,
            window=args.window,
        )
    )
    temporary = args.out.with_suffix(".tmp")
    temporary.write_text(json.dumps(result, indent=1))
    os.replace(temporary, args.out)


if __name__ == "__main__":
    main()
