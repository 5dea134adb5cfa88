"""Structured logging: one JSON object per line on stderr.

Nothing that reaches a log line may carry a token, secret or cookie: log calls pass
explicit fields, never request headers or bodies.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import re
import sys
import threading
import time

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "color_message"}


class _Clock:
    """RFC 3339 UTC timestamps with milliseconds; the seconds part is formatted once a second."""

    def __init__(self) -> None:
        self._second, self._text = -1, ""

    def format(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._text}.{int((created - second) * 1000):03d}Z"


_clock = _Clock()
_JSON_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{0,128}")  # what dialects.headers.request_id lets through
_stream = None  # set by configure(): where JSON lines go


class JsonFormatter(logging.Formatter):
    """One JSON object per record; extra= fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": _clock.format(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = record.__dict__
        for key in fields.keys() - _STANDARD:
            if not key.startswith("_"):
                line[key] = fields[key]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class DecisionLog:
    """The one log line per check, written in batches.

    It sits on the request path, so when `configure()` set up JSON logging it builds the
    line itself instead of going through logging's record, handler and formatter
    machinery (about three times the cost), and it does not write per line: lines are
    buffered and written together at most FLUSH_SECONDS later, or as soon as
    MAX_BUFFERED are waiting, and at shutdown (`flush()`: the service's stop, and
    atexit), so nothing is lost on SIGTERM and at most FLUSH_SECONDS of lines on a crash.
    Any thread may write (the gRPC port's workers do): the buffer is under a lock, and the
    timed flush runs on the event loop `bind()` named; with no loop a line is written at
    once. Level filtering still follows the `authgate.decision` logger.

    A line is `fixed` fields encoded once per decision (`encode_fields`; a cached decision
    keeps them) between the per-request ones: ts, request_id (a sane proxy id or one of
    ours, so JSON-safe as is) and latency_ms.
    """

    FLUSH_SECONDS = 0.1
    MAX_BUFFERED = 256

    def __init__(self, name: str = "authgate.decision") -> None:
        self.name = name
        self.logger = logging.getLogger(name)
        self._buffer: list[str] = []
        self._flush_pending = False
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._head = f'"level":"info","logger":"{name}","msg":"decision","request_id":"'
        atexit.register(self.flush)

    def bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """The loop that runs the timed flushes of lines written from other threads."""
        self._loop = loop

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    @staticmethod
    def encode_fields(fields: dict) -> str:
        """The fields as the inside of a JSON object (no braces), once per decision."""
        return json.dumps(fields, default=str, separators=(",", ":"))[1:-1]

    def write(self, request_id: str, fixed: str, latency_ms: float, fields: dict | None = None) -> None:
        """One decision line; `fields` (the decoded `fixed`) is only read when authgate is
        used as a library, where the application's logging gets a normal record."""
        if _stream is None:
            self.logger.info("decision", extra={"request_id": request_id, **(fields or {}), "latency_ms": latency_ms})
            return
        if not _JSON_SAFE_ID.fullmatch(request_id):
            request_id = json.dumps(request_id)[1:-1]
        line = f'{{"ts":"{_clock.format(time.time())}",{self._head}{request_id}",{fixed},"latency_ms":{latency_ms}}}\n'
        with self._lock:
            self._buffer.append(line)
            if len(self._buffer) < self.MAX_BUFFERED and self._flush_pending:
                return
            full = len(self._buffer) >= self.MAX_BUFFERED
            self._flush_pending = not full
        if full:
            self.flush()
            return
        try:
            asyncio.get_running_loop().call_later(self.FLUSH_SECONDS, self.flush)
        except RuntimeError:  # not on a loop: a worker thread, or no loop at all
            loop = self._loop
            if loop is None or loop.is_closed():
                self.flush()
            else:
                loop.call_soon_threadsafe(loop.call_later, self.FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        with self._lock:
            self._flush_pending = False
            if not self._buffer or _stream is None:
                return
            lines, self._buffer = self._buffer, []
        try:
            _stream.write("".join(lines))
            _stream.flush()
        except (OSError, ValueError):  # stderr closed (at exit): nothing left to tell
            pass


def configure(level: str = "info") -> None:
    # Records need no caller frame, thread or process names: skipping them saves several
    # microseconds per decision line.
    logging._srcfile = None  # documented switch: no findCaller() stack walk
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _stream
    _stream = sys.stderr
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # authgate logs its own outbound failures
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
