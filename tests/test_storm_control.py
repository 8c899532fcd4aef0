"""Storm control: a flood of new alerts becomes 10 individual deliveries and one summary per hazard."""

from __future__ import annotations

import json

import pytest

from twin.alerting.labels import AlertLabels
from twin.alerting.storm import StormControl, summary_fields

T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z, 08:00 in Shanghai


def flood(k: int, level: int = 2, depth: float = 0.1, hazard: str = "flood") -> AlertLabels:
    return AlertLabels(f"{hazard}-{k:03d}", hazard, level, f"{hazard}:point:{k}", f"Point {k}", (), None, "bund",
                       "place", depth, f"点{k}")


def flood_of_alerts(n: int = 100, ticks: int = 6) -> list[list[AlertLabels]]:
    """``n`` alerts over ``ticks`` ticks 10 s apart (one minute); a few red, deeper ones among them."""
    alerts = [flood(k, level=4 if k % 25 == 7 else 2, depth=0.05 + k / 1000) for k in range(n)]
    return [alerts[i::ticks] for i in range(ticks)]


def run(storm: StormControl, batches, t0=T0, active=None):
    out = []
    for i, batch in enumerate(batches):
        out.append(storm.tick(t0 + 10 * i, batch, active))
    return out


def test_a_hundred_alerts_in_a_minute_are_ten_deliveries_and_one_summary():
    storm = StormControl(10, 60.0, district="bund")
    decisions = run(storm, flood_of_alerts())
    delivered = [i for d in decisions for i in d.deliver]
    held = {i: s for d in decisions for i, s in d.held.items()}
    assert len(delivered) == 10 and len(held) == 90 and not set(delivered) & set(held)
    assert len(set(held.values())) == 1, "one summary for the hazard"
    first_tick = decisions[0]
    assert first_tick.deliver == [f"flood-{k:03d}" for k in range(96, 41, -6)], "the deepest of the first tick"
    raised = [s for d in decisions for s in d.summaries if s.kind == "raised"]
    assert len(raised) == 1 and raised[0].identifier == next(iter(held.values()))
    last = [s for d in decisions for s in d.summaries][-1]
    assert last.count == 90 and set(last.member_ids) == set(held) and last.level == 4
    assert [w["identifier"] for w in last.worst] == ["flood-082", "flood-057", "flood-032", "flood-007",
                                                     "flood-099"], "red first, then the deepest"
    assert last.worst[0] == {"identifier": "flood-082", "level": 4, "level_name": "red", "value": 0.132,
                             "place": "flood:point:82", "place_name": "Point 82", "place_name_zh": "点82"}
    assert last.headline_en == "Alert storm: 90 waterlogging warnings in bund, worst red at Point 82"
    assert last.headline_zh == "告警风暴：bund 90条积水预警，最严重：点82（红色）"
    assert "since 08:00" in last.description_en and "1. Point 82 (red, 0.13 m)" in last.description_en
    assert "自08:00起的90条积水预警" in last.description_zh
    notices = [n for d in decisions for n in d.notices]
    assert len(notices) == 1 and "Alert storm in bund" in notices[0] and raised[0].identifier in notices[0]
    assert storm.holding("flood-050") == raised[0].identifier and storm.holding("flood-096") is None


def test_one_summary_per_hazard():
    storm = StormControl(10, 60.0, district="bund")
    batch = [flood(k) for k in range(12)] + [flood(k, level=1, hazard="crowd", depth=2.0) for k in range(6)]
    d = storm.tick(T0, batch)
    assert len(d.deliver) == 10 and len(d.held) == 8
    assert sorted(s.hazard for s in d.summaries) == ["crowd", "flood"]
    assert {s.kind for s in d.summaries} == {"raised"}


def test_the_storm_ends_after_a_calm_window_and_releases_the_members_still_active():
    storm = StormControl(10, 60.0, district="bund")
    batches = flood_of_alerts()
    run(storm, batches)
    held = sorted(storm.storms["flood"].members)
    still = [a for b in batches for a in b if a.identifier in held[:15]]
    t = T0 + 60
    cleared_at, released = None, []
    for k in range(20):  # no new alerts: calm from the first window without more than 10 raised
        d = storm.tick(t + 10 * k, [], still)
        released += d.released
        if any(s.kind == "cleared" for s in d.summaries):
            cleared_at = t + 10 * k
            [summary] = d.summaries
            assert summary.count == 15 and "over" in d.notices[0] and "15 held alerts" in d.notices[0]
    assert cleared_at == T0 + 50 + 60 + 60, "calm from the tick the window emptied (T0+110), for a full window"
    assert not storm.in_storm and sorted(released) == sorted(held[:15])
    assert storm.holding(held[0]) is None


def test_a_member_that_ends_leaves_the_summary_and_an_empty_storm_is_cleared():
    storm = StormControl(2, 60.0)
    d = storm.tick(T0, [flood(k, depth=0.1 * k) for k in range(4)])
    assert d.deliver == ["flood-003", "flood-002"] and set(d.held) == {"flood-000", "flood-001"}
    d = storm.tick(T0 + 10, [], [flood(0)])
    assert [(s.kind, s.count, s.member_ids) for s in d.summaries] == [("updated", 1, ("flood-000",))]
    d = storm.tick(T0 + 20, [], [])
    assert [(s.kind, s.count) for s in d.summaries] == [("cleared", 0)] and not storm.in_storm


def test_a_steady_rate_at_the_limit_is_no_storm():
    storm = StormControl(10, 60.0)
    for i in range(30):  # 10 a minute, forever
        d = storm.tick(T0 + 6 * i, [flood(i)])
        assert d.deliver == [f"flood-{i:03d}"] and not d.held
    assert not storm.in_storm


def test_snapshot_round_trip_gives_the_same_decisions():
    batches = flood_of_alerts()
    one = StormControl(10, 60.0, district="bund")
    run(one, batches[:3])
    saved = json.loads(json.dumps(one.save_state()))
    two = StormControl(10, 60.0, district="bund")
    two.restore_state(saved)
    assert two.save_state() == one.save_state()
    rest = batches[3:] + [[]] * 15
    a = run(one, rest, T0 + 30)
    b = run(two, rest, T0 + 30)
    assert [(d.deliver, d.held, d.released, d.summaries, d.notices) for d in a] == \
        [(d.deliver, d.held, d.released, d.summaries, d.notices) for d in b]


def test_summary_fields_rank_by_level_then_worst_value():
    traffic = [AlertLabels(f"t{k}", "traffic", lvl, f"road-{k}", f"Road {k}", (), value=speed)
               for k, (lvl, speed) in enumerate([(3, 12.0), (4, 8.0), (4, 3.0), (3, 5.0)])]
    from twin.alerting.storm import Member

    f = summary_fields("traffic", [Member.of(a) for a in traffic], "", T0, 10, 60)
    assert [w["identifier"] for w in f["worst"]] == ["t2", "t1", "t3", "t0"], "lower speed is worse"
    assert f["headline_en"] == "Alert storm: 4 traffic congestion warnings, worst red at Road 2"
    assert "3.00 km/h" in f["description_en"]


@pytest.mark.parametrize("args", [(0, 60.0), (10, 0.0), (2.5, 60.0), (10, float("inf"))])
def test_bad_settings_are_refused(args):
    with pytest.raises(ValueError, match="StormControl"):
        StormControl(*args)


def test_delivery_control_applies_inhibition_then_silences_then_storm(tmp_path):
    import shapely

    from twin.alerting.inhibition import Inhibitor
    from twin.alerting.silences import SilenceBook
    from twin.alerting.store import Store
    from twin.alerting.storm import DeliveryControl

    store = Store.open(tmp_path / "a.db")
    book = SilenceBook(store, new_id=lambda: "s1")
    control = DeliveryControl(Inhibitor.default(), book, StormControl(3, 60.0, district="bund"))
    zone = AlertLabels("red", "flood", 4, "flood:grid:E3", "Grid E3", (), shapely.box(0, 0, 500, 500), "bund",
                       "place", 0.5)
    inside = AlertLabels("portal", "flood", 2, "flood:point:water-03", "Portal", ("water-03",),
                         shapely.box(10, 10, 20, 20), "bund", "place", 0.2)
    pumped = AlertLabels("pump", "flood", 2, "flood:point:water-05", "Pump", ("water-05",),
                         shapely.box(900, 900, 910, 910), "bund", "place", 0.2)
    others = [flood(k, depth=0.01 * k) for k in range(4)]
    book.create([("place", "=", "flood:point:water-05")], T0 + 600, "Wang Fang", "pump works", T0)
    everyone = [zone, inside, pumped, *others]
    plan = control.tick(T0, everyone, [a.identifier for a in everyone])
    assert plan.suppressed["portal"]["by"] == "inhibition" and plan.suppressed["portal"]["id"] == "red"
    assert plan.suppressed["pump"] == {"by": "silence", "id": "s1",
                                       "reason": f"silenced by Wang Fang until {T0 + 600:.0f}: pump works"}
    assert plan.storm.deliver == ["red", "flood-003", "flood-002"], "3 a minute: the red one first"
    assert {i for i, s in plan.suppressed.items() if s["by"] == "storm"} == {"flood-000", "flood-001"}
    assert plan.to_units("red", "updated") and not plan.to_units("pump", "updated")
    assert plan.to_units("pump", "cancelled"), "a Cancel reaches the units that had the alert"
    assert plan.send_current == []

    book.expire("s1", "Wang Fang", "done", T0 + 30)  # the red alert ends: the portal is no longer inhibited
    rest = [a for a in everyone if a.identifier != "red"]
    plan = control.tick(T0 + 30, rest, [])
    assert {i: s["by"] for i, s in plan.suppressed.items()} == dict.fromkeys(
        ["portal", "pump", "flood-000", "flood-001"], "storm"), "lifted, but the budget of 3 a minute is spent"
    assert plan.send_current == [] and [s.kind for s in plan.storm.summaries] == ["updated"]
    sent = []
    for k in range(1, 16):  # calm from T0+60, storm over at T0+120: 3 released then, the 4th a minute later
        plan = control.tick(T0 + 30 + 10 * k, rest, [])
        sent += [(plan.storm.summaries[0].kind if plan.storm.summaries else None, i) for i in plan.send_current]
    assert sent == [("cleared", "portal"), ("cleared", "pump"), ("cleared", "flood-001"), (None, "flood-000")]
    sent = [i for _, i in sent]
    assert sorted(sent) == ["flood-000", "flood-001", "portal", "pump"] and plan.suppressed == {}
    saved = json.loads(json.dumps(control.save_state()))
    again = DeliveryControl(Inhibitor.default(), book, StormControl(3, 60.0, district="bund"))
    again.restore_state(saved)
    assert again.save_state() == control.save_state()
    store.close()
