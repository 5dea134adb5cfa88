"""Structured logging: one JSON object per line on stderr.

Nothing that reaches a log line may carry a token, secret or cookie: log calls pass
explicit fields, never request headers or bodies.
"""

from __future__ import annotations

import json
import logging
import sys
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
    """The one log line per check. It sits on the request path, so when `configure()` set
    up JSON logging it writes the line itself (one json.dumps, one write) instead of going
    through logging's record, handler and formatter machinery, which costs about three
    times as much; level filtering still follows the `authgate.decision` logger."""

    def __init__(self, name: str = "authgate.decision") -> None:
        self.name = name
        self.logger = logging.getLogger(name)

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def write(self, fields: dict) -> None:
        if not self.enabled():
            return
        if _stream is None:  # used as a library: let the application's logging decide
            self.logger.info("decision", extra=fields)
            return
        line = {"ts": _clock.format(time.time()), "level": "info", "logger": self.name, "msg": "decision", **fields}
        _stream.write(json.dumps(line, default=str, separators=(",", ":")) + "\n")


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
