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


# --- the hashed memory (issue 13: bounded, the same cost for every key) ----------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.floats(allow_nan=False, allow_infinity=False),
                          st.sampled_from(["count", "ack"]), st.text(max_size=20)), max_size=40))
def test_the_scalar_and_the_vector_hash_agree(keys):
    from ingest.dedupe import key_hash, key_hashes, stream_hash

    streams = np.array([stream_hash(d, q, r) for d, _, q, r in keys], dtype=np.uint64)
    ts = np.array([t for _, t, _, _ in keys], dtype=float)
    assert key_hashes(streams, ts).tolist() == [key_hash(int(s), t) for s, t in zip(streams.tolist(), ts, strict=True)]
    assert all(0 < key_hash(stream_hash(d, q, r), t) < 2**62 for d, t, q, r in keys)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(batches, monotone), max_size=12), st.integers(1, 60))
def test_the_oldest_keys_are_forgotten_first_whatever_the_mix_of_calls(seq, max_keys):
    """Against a reference: an insertion-ordered dict of keys cut to the newest ``max_keys``."""
    d, ref = Deduper(max_keys=max_keys), {}
    for b in seq:
        if len(b) == 1:
            new = d.admit_one(*b.keys()[0])
            assert new == (b.keys()[0] not in ref)
            fresh = b.keys() if new else []
        else:
            out, _ = d.filter(b)
            fresh = out.keys()
            assert fresh == [k for i, k in enumerate(b.keys()) if k not in ref and k not in b.keys()[:i]]
        for k in fresh:
            ref[k] = None
        while len(ref) > max_keys:
            del ref[next(iter(ref))]
        assert len(d) == len(ref)
        assert all(d.seen_one(*k) for k in ref)


def _acks_of_unknown_alerts(d: Deduper, start: int, n: int) -> None:
    """Admit ``n`` acks, each of an alert id never seen before."""
    for i in range(start, start + n):
        assert d.admit_one("unit-police-04", 1_767_225_600.0 + i, "ack", f"citytwin.bund.crowd.{i:020d}")


def test_unknown_alert_ids_cost_bounded_memory():
    """Issue 13: every unique alert id in a unit's ack cost 1.86 KB of dedupe memory, up to 2 M keys (3.7 GB).
    Now a key costs the same whatever its stream, and the memory is fixed when the deduper is made."""
    import tracemalloc

    tracemalloc.start()
    try:
        d = Deduper(max_keys=20_000)
        _acks_of_unknown_alerts(d, 0, 20_000)
        filled = tracemalloc.get_traced_memory()[0]
        _acks_of_unknown_alerts(d, 20_000, 100_000)  # five times as many again
        more = tracemalloc.get_traced_memory()[0] - filled
    finally:
        tracemalloc.stop()
    assert filled / 20_000 < 48 and d.nbytes / 20_000 < 48, f"{filled / 20_000:.0f} bytes per unique alert id"
    assert more < 4096, f"full, it grew by {more:,} bytes more after {filled:,}"
    last, gone = 119_999, 99_999
    assert len(d) == 20_000
    assert d.seen_one("unit-police-04", 1_767_225_600.0 + last, "ack", f"citytwin.bund.crowd.{last:020d}")
    assert not d.seen_one("unit-police-04", 1_767_225_600.0 + gone, "ack", f"citytwin.bund.crowd.{gone:020d}")


def test_a_snapshot_of_the_older_per_stream_form_is_rehashed():
    old = {"max_keys": 10, "device": np.array(["d1", "d2"]), "quantity": np.array(["count", "ack"]),
           "ref": np.array(["", "A1"]), "entry_stream": np.array([0, 1, 0]), "entry_len": np.array([2, 1, 1]),
           "entry_chunk": np.array([False, False, False]), "times": np.array([1.0, 2.0, 5.0, 3.0])}
    d = Deduper()
    d.restore_state(old)
    assert len(d) == 4 and d.max_keys == 10
    assert d.seen_one("d1", 1.0, "count") and d.seen_one("d1", 3.0, "count") and d.seen_one("d2", 5.0, "ack", "A1")
    assert not d.seen_one("d2", 5.0, "ack") and not d.seen_one("d1", 5.0, "count")
    assert d.save_state()["scheme"] == "blake2b8-splitmix64-62"


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12), st.lists(st.lists(st.integers(1, 40), max_size=12), max_size=30))
def test_the_key_set_holds_the_newest_keys_through_collisions_and_deletions(max_keys, calls):
    """``KeySet`` against a reference; hashes in 1..40 on a table of 16-32 slots collide and wrap all the time,
    so deleting by backward shift is exercised on long probe runs."""
    from ingest.keyset import KeySet

    ks, ref = KeySet(max_keys), {}
    for hashes in calls:
        if len(hashes) > max_keys:
            hashes = hashes[:max_keys]
        new = ks.add(np.array(hashes, dtype=np.int64))
        expected = [h not in ref and h not in hashes[:i] for i, h in enumerate(hashes)]
        assert new.tolist() == expected
        for h, is_new in zip(hashes, expected, strict=True):
            if is_new:
                ref[h] = None
        while len(ref) > max_keys:
            del ref[next(iter(ref))]
        assert len(ks) == len(ref) and ks.oldest_first().tolist() == list(ref)
        assert [ks.holds(h) for h in range(1, 41)] == [h in ref for h in range(1, 41)]


def test_a_lone_surrogate_in_a_stream_is_hashed_not_an_error():
    """JSON may carry a lone surrogate (an ack's ref "\\ud800"): its stream hashes, apart from its neighbours'
    (found by the admission fuzz test, tests/ingest/test_fuzz.py)."""
    from ingest.dedupe import stream_hash

    lone = stream_hash("unit-01", "ack", "\ud800")
    assert lone != stream_hash("unit-01", "ack", "\ud801") and lone != stream_hash("unit-01", "ack", "")
    assert lone == stream_hash("unit-01", "ack", "\ud800")
