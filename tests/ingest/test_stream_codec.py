"""The stream's record format: ``Batch`` <-> Arrow IPC bytes, lossless for every column (ingest.stream.codec)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import COLUMNS, FLOAT_COLUMNS, STRING_COLUMNS, Batch
from ingest.stream.base import Record, tick_headers, tick_msg_id, tick_time
from ingest.stream.codec import SCHEMA_VERSION, CodecError, decode_batch, encode_batch

any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
# every str Python can hold, lone surrogates included (JSON "\ud800" decodes to one)
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
few_texts = st.sampled_from(["", "count", "GCJ02", "c0", "雨量", "a/b"])


@st.composite
def batches(draw) -> Batch:
    n = draw(st.integers(0, 40))
    cols: dict = {}
    for name in FLOAT_COLUMNS:
        cols[name] = np.array(draw(st.lists(any_float, min_size=n, max_size=n)), dtype=np.float64)
    cols["fix"] = np.array(draw(st.lists(st.integers(-128, 127), min_size=n, max_size=n)), dtype=np.int8)
    for name in STRING_COLUMNS:
        strings = st.one_of(any_text, few_texts) if draw(st.booleans()) else few_texts
        cols[name] = np.array(draw(st.lists(strings, min_size=n, max_size=n)), dtype=object).reshape(n)
    return Batch(**cols, ignored=draw(st.integers(0, 2**31)))


def assert_same(a: Batch, b: Batch) -> None:
    assert len(a) == len(b) and a.ignored == b.ignored
    for name in COLUMNS:
        x, y = getattr(a, name), getattr(b, name)
        if name in FLOAT_COLUMNS:  # bit for bit: NaN payloads and -0.0 kept
            assert x.dtype == y.dtype == np.float64
            assert x.view(np.uint64).tolist() == y.view(np.uint64).tolist(), name
        else:
            assert x.dtype == y.dtype, name
            assert x.tolist() == y.tolist(), name


@given(batches())
@settings(max_examples=80, deadline=None)
def test_every_batch_comes_back_equal(batch):
    assert_same(decode_batch(encode_batch(batch)), batch)


@given(batches(), st.sampled_from(["lz4", "zstd"]))
@settings(max_examples=30, deadline=None)
def test_compressed_batches_come_back_equal(batch, compression):
    assert_same(decode_batch(encode_batch(batch, compression)), batch)


def test_nan_payloads_and_negative_zero_survive():
    odd_nan = np.array([0x7FF8000000000123], dtype=np.uint64).view(np.float64)[0]
    b = Batch.build(3, device="d", t=[-0.0, odd_nan, np.inf], quantity="count")
    back = decode_batch(encode_batch(b))
    assert back.t.view(np.uint64).tolist() == b.t.view(np.uint64).tolist()
    assert np.signbit(back.t[0])


def test_a_lone_surrogate_is_kept_as_surrogatepass_bytes():
    b = Batch.build(2, device="d", t=1.0, quantity="report", note=["ok", "\ud800x"])
    data = encode_batch(b)
    field = pa.ipc.open_stream(data).schema.field("note")
    assert pa.types.is_binary(field.type) and field.metadata[b"twin.encoding"] == b"utf-8-surrogatepass"
    assert decode_batch(data).note.tolist() == ["ok", "\ud800x"]


def test_none_in_a_string_column_comes_back_as_none():
    b = Batch.build(3, device="d", t=1.0, quantity="count", ref=np.array([None, "x", None], dtype=object))
    assert decode_batch(encode_batch(b)).ref.tolist() == [None, "x", None]


def test_the_schema_is_versioned_and_readable_by_any_arrow_reader():
    b = Batch.build(2, device=["a", "b"], t=[1.0, 2.0], quantity="count", value=[3.0, 4.0], ignored=7)
    table = pa.ipc.open_stream(encode_batch(b)).read_all()
    assert table.schema.metadata[b"twin.schema"] == SCHEMA_VERSION.encode()
    assert table.schema.metadata[b"twin.ignored"] == b"7"
    assert table.schema.names == list(COLUMNS)
    assert table.column("value").to_pylist() == [3.0, 4.0]
    assert table.column("device").to_pylist() == ["a", "b"]


def _with_metadata(batch: Batch, metadata: dict) -> bytes:
    table = pa.ipc.open_stream(encode_batch(batch)).read_all().replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize("data, message", [
    (b"", "not an Arrow IPC stream"),
    (b"\xff" * 40, "not an Arrow IPC stream"),
    ("other-version", "schema version"),
    ("no-version", "schema version"),
    ("missing-column", "lacks the columns"),
])
def test_bad_bytes_raise_a_codec_error_saying_why(data, message):
    b = Batch.build(1, device="d", t=1.0, quantity="count", value=1.0)
    if data == "other-version":
        data = _with_metadata(b, {b"twin.schema": b"2"})
    elif data == "no-version":
        data = _with_metadata(b, {})
    elif data == "missing-column":
        table = pa.table({"t": [1.0]}, metadata={b"twin.schema": b"1"})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        data = sink.getvalue().to_pybytes()
    with pytest.raises(CodecError, match=message):
        decode_batch(data)


def test_a_column_of_the_wrong_type_is_refused():
    b = Batch.build(1, device="d", t=1.0, quantity="count", value=1.0)
    table = pa.ipc.open_stream(encode_batch(b)).read_all()
    table = table.set_column(table.schema.get_field_index("t"), "t", pa.array(["x"]))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    with pytest.raises(CodecError, match="column t"):
        decode_batch(sink.getvalue().to_pybytes())


def test_a_non_string_value_in_a_string_column_is_refused():
    b = Batch.build(2, device=np.array(["a", 3], dtype=object), t=1.0, quantity="count")
    with pytest.raises(CodecError, match="column device"):
        encode_batch(b)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_tick_record_carries_its_time(t):
    record = Record(5, b"", tick_headers(t))
    assert record.kind == "tick" and tick_time(record) == t
    assert tick_msg_id("310101", t) == tick_msg_id("310101", t) != tick_msg_id("310106", t)


def test_tick_time_refuses_what_is_not_a_tick():
    assert tick_time(Record(1, b"", {"Twin-Kind": "batch"})) is None
    assert tick_time(Record(1, b"", {"Twin-Kind": "tick", "Twin-Time": "soon"})) is None
    with pytest.raises(ValueError, match="finite"):
        tick_headers(float("nan"))
