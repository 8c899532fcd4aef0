"""The vital signs in the store (issue 18): one row per node and tick, thinned to a row a minute after an hour and
kept 24 hours; level frames kept an hour. On SQLite and on the machine's PostgreSQL."""

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
    assert store.frame_times("level", T0) == []


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
