"""Stopping the live service while its ingest thread is inside a long tick (a first tick compiling its kernels,
a stalled disk): ``stop`` returns, nothing is closed under the tick, and the tick ends without an error."""

from __future__ import annotations

import threading

from tests.live.conftest import REGISTRY
from twin.live.core import CoreConfig
from twin.live.service import LiveService, ServiceConfig


def test_a_stop_during_a_long_tick_leaves_the_log_to_the_tick_and_raises_nothing(broker, bund_file, tmp_path):
    cfg = ServiceConfig(broker=broker.url, grid=bund_file, registry=REGISTRY, state_dir=tmp_path / "state",
                        tick_s=0.2, core=CoreConfig(tick_s=0.2), client_id="twin-stop-test")
    service = LiveService(cfg)
    in_tick, release, errors = threading.Event(), threading.Event(), []
    real_tick = service.core.on_tick

    def long_tick(t):
        in_tick.set()
        release.wait(30)
        return real_tick(t)

    service.core.on_tick = long_tick
    previous_hook, threading.excepthook = threading.excepthook, errors.append
    try:
        assert service.start()
        assert in_tick.wait(10), "the ticker ticked"
        service.stop(wait_s=0.1)
        assert not service.raw_log.closed, "the raw log stays open while the tick runs"
        release.set()
        assert service.ingestor.stop(timeout_s=10), "the tick ended and the loop with it"
    finally:
        release.set()
        threading.excepthook = previous_hook
    assert errors == [], [f"{e.exc_type.__name__}: {e.exc_value}" for e in errors]
    service.raw_log.close()
    service.store.close()
