"""Deduplication by (device, t, quantity, ref), checked against a plain set of keys."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.dedupe import Deduper

rows = st.tuples(
    st.sampled_from(["d1", "d2"]),
    st.integers(0, 40).map(float),
    st.sampled_from(["count", "speed"]),
    st.sampled_from(["", "A1"]),
)
batches = st.lists(rows, min_size=0, max_size=30).map(
    lambda rs: Batch.build(
        len(rs),
        device=[r[0] for r in rs],
        t=[r[1] for r in rs],
        quantity=[r[2] for r in rs],
        ref=[r[3] for r in rs],
    )
)
monotone = st.integers(1, 40).flatmap(
    lambda n: st.just(Batch.build(n, device="d1", t=[float(i) for i in range(n)], quantity="count"))
)


@settings(max_examples=300, deadline=None)
@given(st.lists(batches | monotone, max_size=12))
def test_matches_a_set_of_keys(seq):
    dd, seen = Deduper(), set()
    for b in seq:
        out, dups = dd.filter(b)
        expected = []
        keys = b.keys()
        for k in keys:
            if k not in seen:
                seen.add(k)
                expected.append(k)
        assert out.keys() == expected
        assert dups == len(b) - len(expected)


def test_memory_bound_forgets_oldest():
    dd = Deduper(max_keys=100)
    for k in range(10):
        dd.filter(Batch.build(50, device="d", t=[k * 100.0 + i for i in range(50)], quantity="count"))
    assert len(dd) <= 100
    assert dd.filter(Batch.build(1, device="d", t=0.0, quantity="count"))[1] == 0  # forgotten
    assert dd.filter(Batch.build(1, device="d", t=949.0, quantity="count"))[1] == 1  # remembered


@settings(max_examples=100, deadline=None)
@given(st.lists(batches | monotone, max_size=8), st.lists(batches | monotone, max_size=6), st.integers(5, 200))
def test_a_restored_deduper_goes_on_exactly_as_the_original(before, after, max_keys):
    original = Deduper(max_keys=max_keys)
    for b in before:
        original.filter(b)
    state = original.save_state()
    assert all(not isinstance(v, np.ndarray) or v.dtype != object for v in state.values())
    copy = Deduper()
    copy.restore_state(state)
    assert len(copy) == len(original) and copy.max_keys == max_keys
    for b in before + after:  # redeliveries of everything, then new records
        got, want = copy.filter(b), original.filter(b)
        assert got[0].keys() == want[0].keys() and got[1] == want[1]
    assert len(copy) == len(original)


@settings(max_examples=150, deadline=None)
@given(st.lists(batches, max_size=6), batches)
def test_looking_remembers_nothing_and_agrees_with_filter(seq, probe):
    """``seen_one`` / ``all_seen`` answer as ``filter`` would, and change nothing."""
    d, keys = Deduper(), set()
    for b in seq:
        d.filter(b)
        keys.update(b.keys())
    size = len(d)
    assert d.all_seen(probe) == (len(probe) > 0 and set(probe.keys()) <= keys)
    probe_keys = probe.keys()  # Batch.keys(): a list of (device, t, quantity, ref)
    for k in probe_keys:
        assert d.seen_one(*k) == (k in keys)
    assert len(d) == size
    fresh, _ = d.filter(probe)
    assert set(fresh.keys()) == set(probe.keys()) - keys


def test_the_rate_state_is_saved_and_restored_with_the_keys():
    from ingest.validation import STATE_FIELDS, RateLimiter

    d = Deduper(rates=RateLimiter(2, 5))
    d.filter(Batch.build(2, device="d1", t=[1.0, 2.0], quantity="count"))
    st_ = d.rates.state("d1", 100.0)
    assert d.rates.charge(st_, 2.0, 100.0)
    state = d.save_state()
    assert state["rates"]["device"].tolist() == ["d1"] and state["rates"]["state"].shape == (1, len(STATE_FIELDS))
    assert state["rates"]["state"].dtype == np.float64 and state["rates"]["device"].dtype.kind == "U"
    again = Deduper(rates=RateLimiter(2, 5))
    again.restore_state(state)
    assert again.rates._state == d.rates._state and again.seen_one("d1", 2.0, "count")
    old = {k: v for k, v in state.items() if k != "rates"}  # a snapshot from before issue 13
    fresh = Deduper(rates=RateLimiter(2, 5))
    fresh.restore_state(old)
    assert len(fresh.rates) == 0 and fresh.seen_one("d1", 1.0, "count")
    assert "rates" not in Deduper().save_state()
