"""Alert and case numbers without a snapshot: a state folder's raw log replays from its start to the same ids,
and a fresh state folder over an alert store that holds earlier cases gives no id twice (issue 17)."""

from __future__ import annotations

from tests.live.conftest import REGISTRY
from twin.live.core import CoreConfig
from twin.live.query import LiveQuery
from twin.live.service import SNAPSHOT, LiveService, ServiceConfig, TwinClock

T0 = 1_767_189_600.0  # 2025-12-31 22:00 in Shanghai
OPEN = {"category": "road_obstruction", "priority": 2, "lon": 121.4905, "lat": 31.2402, "name_zh": "中山东一路",
        "name_en": "Zhongshan Road (E-1)", "actor": "op-wang", "reason": "test"}


def _service(bund_file, state, db) -> LiveService:
    return LiveService(ServiceConfig(broker="mqtt://127.0.0.1:9", grid=bund_file, registry=REGISTRY, state_dir=state,
                                     db=f"sqlite:///{db}", core=CoreConfig(tick_s=10.0), clock=TwinClock(start=T0)))


def _open(service: LiveService) -> str:
    return service.case_command("open", dict(OPEN))["case"]["id"]


def _close(service: LiveService) -> None:
    service.raw_log.close()
    service.store.close()


def test_numbers_start_where_the_log_started_and_never_repeat_across_state_folders(bund_file, tmp_path):
    db = tmp_path / "shared.db"
    first = _service(bund_file, tmp_path / "a", db)
    a = _open(first)
    _close(first)
    second = _service(bund_file, tmp_path / "b", db)  # a new state folder over the same store
    b = _open(second)
    _close(second)
    assert a.endswith("-0001") and b.endswith("-0002"), (a, b)
    assert not (tmp_path / "b" / SNAPSHOT).exists(), "no snapshot: the next start replays b's log from its start"
    again = _service(bund_file, tmp_path / "b", db)
    try:
        assert [c["id"] for c in LiveQuery(again).cases()] == [b], "the replay rebuilt the same case, no other"
        assert _open(again).endswith("-0003")
        assert len({e["key"] for e in again.store.case_events()}) == len(again.store.case_events())
    finally:
        _close(again)
