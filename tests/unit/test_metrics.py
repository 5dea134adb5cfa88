"""Metrics counted without locks, exposed through collectors."""

import gc

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from authgate.metrics import GcPauses


def _sample(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name))
    return float(line.rsplit(" ", 1)[1])


def test_gc_pauses_are_counted_by_generation_and_exposed_as_a_histogram():
    pauses = GcPauses()
    registry = CollectorRegistry()
    registry.register(pauses)
    pauses.install()
    pauses.install()  # once only
    try:
        assert gc.callbacks.count(pauses.on_collection) == 1
        before = _sample(generate_latest(registry).decode(), 'authgate_gc_pause_seconds_count{generation="2"}')
        gc.collect(2)
        gc.collect(2)
        text = generate_latest(registry).decode()
    finally:
        gc.callbacks.remove(pauses.on_collection)
    assert _sample(text, 'authgate_gc_pause_seconds_count{generation="2"}') == before + 2
    assert _sample(text, 'authgate_gc_pause_seconds_sum{generation="2"}') > 0
    assert _sample(text, 'authgate_gc_pause_seconds_bucket{generation="2",le="+Inf"}') == before + 2
