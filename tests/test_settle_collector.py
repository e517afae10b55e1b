"""A serving node keeps the cyclic collector off what it built at start and collects young objects
seldom: at 3,000 hub sessions the collector took a fifth of the node's core and stopped its loop for
up to 230 ms (BENCHMARKS.md, "Session hub capacity"; tests/test_hub_capacity.py measures the effect)."""

from __future__ import annotations

import gc

from netcheck.server.app import GC_THRESHOLDS, settle_collector


def test_a_serving_node_freezes_what_it_built_and_collects_young_objects_seldom() -> None:
    before = gc.get_threshold()
    try:
        settle_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] >= 10 * 700  # Python's default: a young collection every 700 allocations
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
