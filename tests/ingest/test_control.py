"""Control records (e.g. clock ticks) travel through the ingest loop in order and come back on replay."""

from __future__ import annotations

import json

from ingest.pipeline import Ingestor, control_message
from ingest.rawlog import RawLog
from tests.ingest.fakes import FakeSource


def _senml(device, t, count):
    return json.dumps([{"bn": f"urn:dev:{device}:", "n": "count", "u": "count", "v": count, "t": t}]).encode()


def test_control_records_keep_their_place_and_are_replayed(tmp_path):
    seen = []
    src = FakeSource()
    log = RawLog(tmp_path / "log")
    ing = Ingestor(src, log, None, sink=lambda b: seen.append(("batch", list(b.value))),
                   control=lambda topic, payload, t, pos: seen.append((topic, payload, pos)))
    t0 = 1_735_689_600.0
    src.put("city/sensors/crowd/c1", _senml("c1", t0, 5), received_at=t0)
    src.queue.put(control_message("$twin/tick", b"1", t0 + 0.5))
    src.put("city/sensors/crowd/c1", _senml("c1", t0 + 1, 7), received_at=t0 + 1)
    while ing.run_once(poll_s=0.01):
        pass
    tick_pos = seen[1][2]
    assert seen == [("batch", [5.0]), ("$twin/tick", b"1", tick_pos), ("batch", [7.0])]
    assert len(src.acked) == 2, "control records are never acknowledged to the broker"
    log.close()
    replayed = []
    again = Ingestor(FakeSource(), RawLog(tmp_path / "log"), None, sink=lambda b: replayed.append(list(b.value)),
                     control=lambda topic, payload, t, pos: replayed.append((topic, pos)))
    assert again.replay() == 3
    assert replayed == [[5.0], ("$twin/tick", tick_pos), [7.0]]
    # resuming at the position handed over with the tick gives exactly what followed it
    rest = []
    tail = Ingestor(FakeSource(), RawLog(tmp_path / "log"), None, sink=lambda b: rest.append(list(b.value)))
    assert tail.replay(tick_pos) == 1 and rest == [[7.0]]


def test_a_tick_does_not_wait_behind_a_backlog_and_keeps_its_logged_place(tmp_path):
    """Issue 13 soak: ticks queued behind a backlog came 2-5 s apart while the twin drained it. A control record
    from ``put_control`` is taken at the head of the next group; the log keeps the order it was handled in."""
    seen = []
    src = FakeSource()
    ing = Ingestor(src, RawLog(tmp_path / "log"), None, sink=lambda b: seen.append(len(b)),
                   control=lambda topic, payload, t, pos: seen.append(topic))
    t0 = 1_735_689_600.0
    for k in range(3000):
        src.put(f"city/sensors/crowd/c{k % 7}", _senml(f"c{k % 7}", t0 + k, k), received_at=t0 + k)
    assert ing.put_control(control_message("$twin/tick", b"1", t0 + 3000))
    ing.config = type(ing.config)(max_group=500)
    assert ing.run_once(poll_s=0.0) == 500
    assert seen == ["$twin/tick", 499], "the tick first, then the first data of the backlog"
    while ing.run_once(poll_s=0.0):
        pass
    assert sum(n for n in seen if isinstance(n, int)) == 3000
    ing.log.close()
    replayed = []
    again = Ingestor(FakeSource(), RawLog(tmp_path / "log"), None, sink=lambda b: replayed.append(len(b)),
                     control=lambda topic, payload, t, pos: replayed.append(topic))
    assert again.replay() == 3001 and replayed[0] == "$twin/tick", "the replay hands the tick over where it was"


def test_control_records_are_bounded_and_a_refusal_is_counted(tmp_path):
    from ingest.pipeline import MAX_CONTROLS

    ing = Ingestor(FakeSource(), RawLog(tmp_path / "log"), None, sink=lambda b: None)
    assert all(ing.put_control(control_message("$twin/tick", b"%d" % k, k)) for k in range(MAX_CONTROLS))
    assert not ing.put_control(control_message("$twin/tick", b"late", 0.0)) and ing.controls_refused == 1
    assert ing.run_once(poll_s=0.0) == MAX_CONTROLS
    ing.log.close()
