"""Durable raw log: append, group commit, rotation, replay from a position, torn tails."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.rawlog import CorruptLogError, LogPosition, RawLog, read_log


def items(n, start=0):
    return [
        (1.7e9 + i, f"city/sensors/crowd/c{i % 3}", f"payload-{i}".encode() * (1 + i % 5))
        for i in range(start, start + n)
    ]


def test_append_and_replay(tmp_path):
    with RawLog(tmp_path) as log:
        pos = log.append_many(items(100))
        log.append(1.0, "t", b"")
    recs = list(read_log(tmp_path))
    assert [(r.received_at, r.topic, r.payload) for r in recs] == [*items(100), (1.0, "t", b"")]
    assert [r.position for r in recs[:100]] == pos
    assert log.stats.count == 2  # one fsync per group


def test_rotation_and_replay_from_position(tmp_path):
    with RawLog(tmp_path, segment_bytes=1000) as log:
        positions = []
        for k in range(20):
            positions += log.append_many(items(10, 10 * k))
    assert len(list(tmp_path.glob("*.seg"))) > 3
    recs = list(read_log(tmp_path, positions[137]))
    assert [r.payload for r in recs] == [p for _, _, p in items(200)[137:]]


def test_reopen_appends_after_existing(tmp_path):
    with RawLog(tmp_path) as log:
        log.append_many(items(5))
    with RawLog(tmp_path) as log:
        log.append_many(items(5, 5))
    assert [r.payload for r in read_log(tmp_path)] == [p for _, _, p in items(10)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(1, 400), garbage=st.binary(max_size=30))
def test_torn_tail_is_truncated_never_read(tmp_path, cut, garbage):
    d = tmp_path / f"log-{cut}-{garbage.hex()}"
    with RawLog(d) as log:
        log.append_many(items(10))
    seg = next(d.glob("*.seg"))
    data = seg.read_bytes()
    cut = min(cut, len(data) - 1)
    seg.write_bytes(data[:-cut] + garbage)  # crash in the middle of the last record(s)
    before = [r.payload for r in read_log(d)]
    assert before == [p for _, _, p in items(10)][: len(before)]
    with RawLog(d) as log:
        log.append(9.0, "after", b"restart")
    after = list(read_log(d))
    assert [r.payload for r in after] == [*before, b"restart"]
    assert os.path.getsize(seg) == after[-1].position.offset + len(b"restart") + 8 + 10 + len("after")


def test_corrupt_closed_segment_raises(tmp_path):
    with RawLog(tmp_path, segment_bytes=300) as log:
        for k in range(10):
            log.append_many(items(3, 3 * k))
    first = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(first.read_bytes())
    data[20] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError):
        list(read_log(tmp_path))
    assert list(read_log(tmp_path, LogPosition(1, 0)))  # later segments still readable
