"""The vital signs in the store (issue 18): a row per node when it changes and once a minute, thinned to the minute
rows after an hour and kept 24 hours; level frames (stored when they change) kept an hour. On SQLite and on the
machine's PostgreSQL."""

from __future__ import annotations

import json

import numpy as np

from tests.test_store import store  # noqa: F401 - the fixture (SQLite and PostgreSQL), shared
from twin.live.vitals import decode_frame, encode_frame

T0 = 1_735_689_600.0  # a whole minute


def _tick(store, t, nodes=("city", "district:310101")):  # noqa: F811 - the fixture's name
    minute = (t - T0) % 60 == 0
    store.record_vitals(t, "m" if minute else "t", {n: json.dumps({"people": {"value": t - T0, "level": 0}})
                                                    for n in nodes},
                        {"level": encode_frame(np.full((2, 3), int(t - T0) % 5, np.int8))})


def test_rows_are_thinned_after_an_hour_and_dropped_after_a_day(store):  # noqa: F811
    # 2 h of ticks every 10 s, two nodes: 720 ticks, 120 of them the first of their minute
    for k in range(720):
        _tick(store, T0 + 10 * k)
    now = T0 + 7190
    assert store.indicator_count() == 1440 and store.indicator_count("m") == 240
    store.prune_vitals(now)
    # tick rows of the last hour (t >= now - 3600 = T0 + 3590: ticks 359..719, 361 a node) and the minute rows
    # before it (minutes 0..59, 60 a node)
    assert store.indicator_count("t") + store.indicator_count("m") == store.indicator_count()
    assert store.indicator_count() == 2 * (361 + 60)
    rows = store.indicator_rows("city", T0, now)
    times = [t for t, _ in rows]
    assert times == sorted(times) and times[:3] == [T0, T0 + 60, T0 + 120] and times[-1] == now
    assert times[59:62] == [T0 + 3540, T0 + 3590, T0 + 3600]
    assert json.loads(rows[-1][1])["people"]["value"] == 7190
    # frames: the last hour only
    assert store.frame_times("level", T0) == [T0 + 10 * k for k in range(359, 720)]
    # a day later only the minute rows of the last 24 h remain
    store.prune_vitals(T0 + 86400 + 1800)
    assert [t for t, _ in store.indicator_rows("city", T0, T0 + 90000)] == [T0 + 60 * m for m in range(30, 120)]
    # every frame but the last one (it is still the frame of the hour: frames are stored when they change)
    assert store.frame_times("level", T0) == [now]


def test_a_replayed_tick_writes_nothing_twice(store):  # noqa: F811
    _tick(store, T0)
    store.record_vitals(T0, "t", {"city": json.dumps({"people": {"value": -1}})}, {"level": b"other"})
    assert store.indicator_count() == 2
    t, bodies = store.indicators_at(T0)
    assert t == T0 and json.loads(bodies["city"])["people"]["value"] == 0
    assert decode_frame(store.frame_at("level", T0)[1], (2, 3)).tolist() == [[0, 0, 0], [0, 0, 0]]


def test_indicators_and_frames_at_or_before_a_time(store):  # noqa: F811
    assert store.indicators_at(T0) == (None, {}) and store.frame_at("level", T0) is None
    for k in range(4):
        _tick(store, T0 + 7 * k)
    t, bodies = store.indicators_at(T0 + 15)
    assert t == T0 + 14 and set(bodies) == {"city", "district:310101"}
    assert json.loads(bodies["district:310101"])["people"]["value"] == 14
    t, body = store.frame_at("level", T0 + 20.5)
    assert t == T0 + 14 and decode_frame(body, (2, 3)).tolist() == [[4, 4, 4], [4, 4, 4]]
    assert store.frame_at("level_flood", T0 + 100) is None
    assert [(t, n) for t, n, _ in store.indicator_samples(T0, T0 + 60)] == [(T0, "city"), (T0, "district:310101")]


def _row(store, t, res, bodies, frames=None):  # noqa: F811
    store.record_vitals(t, res, {n: json.dumps({"people": [v, 0]}) for n, v in bodies.items()}, frames or {})


def test_rows_stored_at_changes_are_read_at_or_before_each_node(store):  # noqa: F811
    # minute rows at T0 and T0 + 60 for both nodes; between them only the node that changed has a row
    _row(store, T0, "m", {"city": 1, "unit:A1": 10})
    _row(store, T0 + 5, "t", {"city": 2})
    _row(store, T0 + 9, "t", {"unit:A1": 11})
    _row(store, T0 + 60, "m", {"city": 3, "unit:A1": 12})
    _row(store, T0 + 61, "t", {"unit:A1": 13})

    def at(t):
        when, bodies = store.indicators_at(t)
        return when, {n: json.loads(b)["people"][0] for n, b in bodies.items()}

    assert at(T0 - 1) == (None, {})
    assert at(T0 + 4) == (T0, {"city": 1, "unit:A1": 10})
    assert at(T0 + 7) == (T0 + 5, {"city": 2, "unit:A1": 10})  # the city's change, the unit's minute row
    assert at(T0 + 59.9) == (T0 + 9, {"city": 2, "unit:A1": 11})
    assert at(T0 + 100) == (T0 + 61, {"city": 3, "unit:A1": 13})
    # the history of a node: its changes and its minute rows
    assert [t for t, _ in store.indicator_rows("city", T0, T0 + 100)] == [T0, T0 + 5, T0 + 60]
    # the timeline: every time something was stored (indicators or a frame of any name)
    store.record_vitals(T0 + 30, "t", {}, {"level_flood": b"x"})
    assert store.vital_times(T0 + 1) == [T0 + 5, T0 + 9, T0 + 30, T0 + 60, T0 + 61]


def test_the_prune_keeps_the_last_frame_of_each_name_before_the_hour(store):  # noqa: F811
    frame = encode_frame(np.zeros((2, 3), np.int8))
    for t, names in ((T0, ("level", "level_flood")), (T0 + 100, ("level",)), (T0 + 4000, ("level",))):
        store.record_vitals(t, "t", {}, dict.fromkeys(names, frame))
    store.prune_vitals(T0 + 3700 + 50)  # frames kept from T0 + 150: the last before, per name, stays
    assert store.frame_times("level", T0) == [T0 + 100, T0 + 4000]
    assert store.frame_times("level_flood", T0) == [T0]
    assert store.frame_at("level_flood", T0 + 3750)[0] == T0


def test_the_prune_of_tick_rows_does_not_walk_the_minute_rows(tmp_path):
    from twin.alerting.store import Store

    s = Store.open(tmp_path / "v.db")
    plan = s._all("EXPLAIN QUERY PLAN DELETE FROM indicators WHERE res = 't' AND t < ?", (T0,))
    s.close()
    assert any("indicators_res_t (res=? AND t<?)" in row[-1] for row in plan), plan
