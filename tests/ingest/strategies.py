"""Hypothesis strategies shared by the ingest tests: device ids and SenML sensor batches."""

from __future__ import annotations

from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.decoders.units import QUANTITIES, SENSOR_KINDS

device_ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12).filter(
    lambda s: s[0].isalnum()
)


@st.composite
def sensor_batches(draw, times_ms: st.SearchStrategy[int], offset_s: float = 0.0):
    """(kind, batch): 1-30 readings of one device of a random sensor kind, each at ``offset_s + t / 1000`` [unix s]
    with t drawn from ``times_ms`` [ms]; values within each quantity's valid range."""
    kind = draw(st.sampled_from(sorted(SENSOR_KINDS)))
    device = draw(device_ids)
    n = draw(st.integers(1, 30))
    qs = draw(st.lists(st.sampled_from(SENSOR_KINDS[kind]), min_size=n, max_size=n))
    vals = [draw(st.floats(QUANTITIES[q].low, QUANTITIES[q].high)) for q in qs]
    ts = draw(st.lists(times_ms, min_size=n, max_size=n))
    return kind, Batch.build(n, device=device, t=[offset_s + t / 1000 for t in ts], quantity=qs, value=vals)
