"""The heap is settled once the twin's long-lived objects exist (docs/liveness.md, section 7): full garbage
collections then walk only what came after, so they no longer stall the tick in a flood."""

from __future__ import annotations

import gc

from twin.cli.main import build_parser
from twin.cli.run import service_config
from twin.live.service import ServiceConfig
from twin.live.warmup import settle_heap


def _tracked(obj: object) -> bool:
    """Whether a collection still walks ``obj`` (frozen objects are in no generation)."""
    return any(o is obj for o in gc.get_objects())


def test_settling_the_heap_takes_what_lives_out_of_the_collections_and_leaves_new_objects_in_them():
    long_lived = [[i] for i in range(1000)]
    assert _tracked(long_lived)
    took = settle_heap()
    assert took >= 0.0 and gc.get_freeze_count() >= len(long_lived)
    assert not _tracked(long_lived) and not _tracked(long_lived[500])
    later = [[1], [2]]
    assert _tracked(later), "what comes after the settling is collected as usual"
    cycle = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1, "new garbage cycles are still reclaimed"


def test_twin_run_settles_its_heap_and_an_embedded_service_does_not(bund_file, tmp_path):
    args = build_parser().parse_args(["run", "--grid", str(bund_file), "--state", str(tmp_path / "state")])
    assert service_config(args).freeze_heap is True
    assert ServiceConfig("mqtt://127.0.0.1:1883", bund_file, bund_file, tmp_path).freeze_heap is False
