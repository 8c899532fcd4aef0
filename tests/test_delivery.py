"""Routing alerts to field units by their last position, arrival on scene (only of units sent the alert),
who may acknowledge what, entity table order."""

from __future__ import annotations

import numpy as np

from twin.alerting.delivery import CLOSED_MEMORY, NOT_SENT, UNKNOWN_ALERT, Router
from twin.district.grid import GridSpec
from twin.live.entities import EntityTable

GRID = GridSpec("EPSG:4549", 642000.0, 3459000.0, 10.0, 200, 200)


def _table(*units):
    table = EntityTable(GRID)
    for uid, x, y, t in units:
        table.register(uid, "unit", "police")
        row, col = GRID.cell_of(x, y)
        table.update(np.array([uid]), np.array([t]), np.array([121.0]), np.array([31.0]), np.array([x]),
                     np.array([y]), row, col, np.array([0.0]), np.array([0.0]))
    return table


def _cells(r0, r1, c0, c1):
    return np.array([r * GRID.nx + c for r in range(r0, r1) for c in range(c0, c1)])


def test_units_inside_the_buffer_get_the_alert_and_outside_do_not():
    area = _cells(100, 110, 100, 110)  # x 643000..643100, y 3457900..3458000
    table = _table(("near", 643050.0 + 450.0, 3457950.0, 1.0), ("far", 643050.0 + 560.0, 3457950.0, 1.0),
                   ("in", 643050.0, 3457950.0, 1.0))
    router = Router(GRID, buffer_m=500.0)
    router.set_area("a1", 0.0, area)
    got = router.recipients("a1", table.located_units())
    assert sorted(got) == ["in", "near"]
    router.mark_delivered("a1", got)
    assert router.recipients("a1", table.located_units()) == [], "nothing new to deliver"
    # the far unit drives into range: it gets the alert as soon as it is there
    table.update(np.array(["far"]), np.array([2.0]), np.array([121.0]), np.array([31.0]), np.array([643500.0]),
                 np.array([3457950.0]), *GRID.cell_of(643500.0, 3457950.0), np.array([20.0]), np.array([90.0]))
    assert router.recipients("a1", table.located_units()) == ["far"]
    router.mark_delivered("a1", ["far"])
    # an update goes to every unit that had the alert, wherever it is now
    router.set_area("a1", 0.0, _cells(100, 101, 100, 101))
    assert sorted(router.recipients("a1", table.located_units())) == ["far", "in", "near"]


def test_arrival_on_scene_is_recorded_once_with_the_time_from_the_alert():
    table = _table(("u1", 642500.0, 3458500.0, 10.0))
    router = Router(GRID)
    router.set_area("a1", 100.0, _cells(100, 110, 100, 110))
    router.mark_delivered("a1", ["u1"])
    assert router.arrivals(table.located_units()) == []
    table.update(np.array(["u1"]), np.array([160.0]), np.array([121.0]), np.array([31.0]), np.array([643010.0]),
                 np.array([3457990.0]), *GRID.cell_of(643010.0, 3457990.0), np.array([5.0]), np.array([0.0]))
    assert router.arrivals(table.located_units()) == [("a1", "u1", 160.0, 60.0)]
    assert router.arrivals(table.located_units()) == []


def test_a_unit_never_sent_the_alert_is_never_on_scene_wherever_it_is():
    table = _table(("inside", 643010.0, 3457990.0, 10.0), ("sent", 643020.0, 3457980.0, 10.0))
    router = Router(GRID)
    router.set_area("a1", 0.0, _cells(100, 110, 100, 110))
    router.mark_delivered("a1", ["sent"])
    assert [a[1] for a in router.arrivals(table.located_units())] == ["sent"], "inside the area, but never sent it"
    assert router.arrivals(table.located_units()) == []
    router.mark_delivered("a1", ["inside"])  # once it has been sent the alert, being there is arriving
    assert [a[1] for a in router.arrivals(table.located_units())] == ["inside"]


def test_a_unit_may_acknowledge_only_an_alert_it_was_sent_even_after_the_cancel():
    router = Router(GRID)
    router.set_area("a1", 0.0, _cells(100, 110, 100, 110))
    router.mark_delivered("a1", ["u1"])
    assert router.ack_problem("a1", "u1") is None
    assert router.ack_problem("a1", "u2") == NOT_SENT
    assert router.ack_problem("a1.update1", "u1") == UNKNOWN_ALERT, "a message identifier is not an alert's"
    assert router.ack_problem("nothing", "u1") == UNKNOWN_ALERT
    router.close("a1")  # a late ack, or "resolved" after the Cancel, is still recognised
    assert router.ack_problem("a1", "u1") is None and router.ack_problem("a1", "u2") == NOT_SENT
    restored = Router(GRID)
    restored.restore_state(router.save_state())
    assert restored.ack_problem("a1", "u1") is None and restored.ack_problem("a1", "u2") == NOT_SENT
    restored.restore_state({"areas": []})  # a snapshot from before the memory of cancelled alerts
    assert restored.ack_problem("a1", "u1") == UNKNOWN_ALERT


def test_the_memory_of_cancelled_alerts_is_bounded():
    router = Router(GRID)
    for k in range(CLOSED_MEMORY + 5):
        router.set_area(f"a{k}", 0.0, _cells(100, 101, 100, 101))
        router.mark_delivered(f"a{k}", ["u1"])
        router.close(f"a{k}")
    assert len(router.closed) == CLOSED_MEMORY and not router.areas
    assert router.ack_problem("a0", "u1") == UNKNOWN_ALERT, "the oldest are forgotten"
    assert router.ack_problem(f"a{CLOSED_MEMORY + 4}", "u1") is None


def test_positions_never_move_backwards_in_time():
    table = _table(("u1", 642500.0, 3458500.0, 10.0))
    moved = table.update(np.array(["u1", "u1", "ghost"]), np.array([5.0, 20.0, 30.0]), np.zeros(3), np.zeros(3),
                         np.array([1.0, 642600.0, 0.0]), np.array([1.0, 3458600.0, 0.0]),
                         np.array([0, 40, 0]), np.array([0, 60, 0]), np.zeros(3), np.zeros(3))
    u = table.entities["u1"]
    assert moved == ["u1"] and u.t == 20.0 and u.x == 642600.0 and "ghost" not in table.entities
    rows = table.save_state()
    again = EntityTable(GRID)
    again.restore_state(rows)
    assert again.save_state() == rows


def test_an_alert_nobody_is_near_goes_to_the_nearest_units_once():
    area = _cells(100, 110, 100, 110)  # x 643000..643100, y 3457900..3458000
    table = _table(("d900", 643100.0 + 900.0, 3457950.0, 1.0), ("d700", 643100.0 + 700.0, 3457950.0, 1.0),
                   ("d1500", 643000.0 - 1500.0, 3457950.0, 1.0), ("d800", 643050.0, 3458000.0 + 800.0, 1.0))
    router = Router(GRID, buffer_m=500.0, nearest=2)
    router.set_area("a1", 0.0, area)
    assert router.recipients("a1", table.located_units()) == [], "without the fallback: nobody in reach"
    got = router.recipients("a1", table.located_units(), nearest_if_none=True)
    assert got == ["d700", "d800"], "the two closest to the area's edge, nearest first"
    router.mark_delivered("a1", got)
    assert router.recipients("a1", table.located_units(), nearest_if_none=True) == [], "only once"
    router.set_area("a1", 0.0, area)  # an update reaches those who had it, and no one else
    assert sorted(router.recipients("a1", table.located_units(), nearest_if_none=True)) == ["d700", "d800"]
