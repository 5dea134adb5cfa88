"""The cyclic garbage collector, paused around work that allocates much and frees little.

Parsing and compiling a 10,000-policy snapshot makes about a million objects that all live
until the work ends; with the collector running, its passes over that growing heap took
three quarters of a JSON parse and half of a compile (bench/REPORT.md "Scale"). Such
work makes no garbage cycles that must go before it ends, so the collector waits; it
resumes as it was, and its first pass after the pause walks every object made meanwhile
that is still alive. So a pause should end where the work's temporaries are already gone
(after the function that held them returned), not around a `return` that still holds them.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
