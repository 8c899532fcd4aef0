"""`twin.live.observations.SensorReadings.apply` takes a batch's records at once: it must hold exactly what applying
them one by one, oldest first, gives (the reference below, the code before it was vectorised), for any batch of
known and unknown devices, quantities of this kind and others, ties in time, late and non-finite records."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.live.observations import SensorReadings

IDS = ("a", "b", "c")
QUANTITIES = ("count", "level")


def _one_by_one(r: SensorReadings, device, t, quantity, value) -> np.ndarray:
    """The reference: each record of this kind in time order, taken when not older than the reading held."""
    mine = np.isin(quantity, r.quantities) & np.isfinite(value) & np.isfinite(t)
    rows = np.array([r.index.get(d, -1) for d in device], dtype=np.int64)
    mine &= rows >= 0
    idx = np.flatnonzero(mine)
    for i in idx[np.argsort(t[idx], kind="stable")]:
        row, col = rows[i], r.column[quantity[i]]
        if t[i] >= r.t[row, col]:
            r.t[row, col], r.value[row, col] = t[i], value[i]
    return mine


records = st.lists(st.tuples(st.sampled_from(("a", "b", "c", "zz")), st.sampled_from(("count", "level", "rain")),
                             st.one_of(st.sampled_from((0.0, 1.0, 2.0, 5.0)), st.just(float("nan"))),
                             st.one_of(st.floats(-10, 10, allow_nan=False), st.just(float("inf")))),
                   max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(records, min_size=1, max_size=4))
def test_a_batch_at_once_holds_what_its_records_one_by_one_hold(batches):
    fast, slow = SensorReadings("crowd", IDS, QUANTITIES), SensorReadings("crowd", IDS, QUANTITIES)
    for batch in batches:  # several batches: a record older than the reading held must not replace it
        device = np.array([d for d, _, _, _ in batch] or [], dtype=object)
        quantity = np.array([q for _, q, _, _ in batch] or [], dtype=object)
        t = np.array([x for _, _, x, _ in batch], dtype=float)
        value = np.array([v for _, _, _, v in batch], dtype=float)
        taken = fast.apply(device, t, quantity, value)
        expected = _one_by_one(slow, device, t, quantity, value)
        assert taken.tolist() == expected.tolist()
        np.testing.assert_array_equal(fast.t, slow.t)
        np.testing.assert_array_equal(fast.value, slow.value)


def test_the_later_of_two_records_with_the_same_time_wins_and_an_older_one_changes_nothing():
    r = SensorReadings("crowd", IDS, QUANTITIES)
    r.apply(np.array(["a", "a"], dtype=object), np.array([5.0, 5.0]), np.array(["count", "count"], dtype=object),
            np.array([1.0, 2.0]))
    assert r.latest("count")[0][0] == 2.0 and r.latest("count")[1][0] == 5.0
    taken = r.apply(np.array(["a"], dtype=object), np.array([4.0]), np.array(["count"], dtype=object),
                    np.array([9.0]))
    assert taken.tolist() == [True] and r.latest("count")[0][0] == 2.0, "a late record replaced a newer reading"
