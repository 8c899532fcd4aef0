"""``Batch`` <-> Arrow IPC bytes: the records of the stream (docs/city-deployment.md section 3).

One record of the stream is one Arrow IPC *stream* (schema message, record batches, end-of-stream marker) with
the columns of ``ingest.batch.Batch`` in its order: a documented, language-neutral format any Arrow library
reads (``pyarrow.ipc.open_stream``, arrow-rs, Arrow Java...).

==========  ==================================  ==================================================
column      Arrow type                          meaning (see ``ingest.batch``)
==========  ==================================  ==================================================
device      dictionary<int32, utf8>             device id
t           float64                             observation time [s since 1970-01-01 UTC]
quantity    dictionary<int32, utf8>             quantity name
value       float64                             value in the quantity's canonical unit
lon, lat    float64                             position as sent [degree], in ``datum``
speed_kmh   float64                             ground speed [km h-1]
course_deg  float64                             course over ground [degree]
hdop        float64                             horizontal dilution of precision [1]
alt_m       float64                             altitude above the geoid [m]
fix         int8                                GGA fix quality, -1 absent
datum       dictionary<int32, utf8>             ``CGCS2000``, ``WGS84``, ``GCJ02`` or ""
ref         dictionary<int32, utf8>             reference carried by the record, or ""
note        dictionary<int32, utf8>             free text, or ""
==========  ==================================  ==================================================

Schema metadata: ``twin.schema`` = ``SCHEMA_VERSION`` (a reader refuses another major version) and
``twin.ignored`` = the batch's ``ignored`` count. Absent values are NaN / -1 / "" as in ``Batch``, never
Arrow nulls; a ``None`` in a string column is written as an Arrow null and read back as ``None``.

Lossless: floats keep their bits (NaN payloads, -0.0), every Python ``str`` comes back equal. A string column
holding a lone surrogate (which UTF-8 cannot encode; JSON ``"\\ud800"`` decodes to one) is written as
``binary`` with field metadata ``twin.encoding = utf-8-surrogatepass`` instead.

String columns are dictionary-encoded: on reading, each distinct string becomes one Python object and the column
is an index into them, so columns of few distinct values (quantity, datum, empty ref and note) cost next to
nothing to decode.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ingest.batch import COLUMNS, FLOAT_COLUMNS, STRING_COLUMNS, Batch

SCHEMA_VERSION = "1"
"""Major version of the record layout above (``twin.schema`` in the schema metadata)."""
VERSION_KEY = b"twin.schema"
IGNORED_KEY = b"twin.ignored"
ENCODING_KEY = b"twin.encoding"
SURROGATEPASS = b"utf-8-surrogatepass"
CONTENT_TYPE = "application/vnd.apache.arrow.stream"
"""Media type of an encoded batch (Arrow IPC stream format)."""


class CodecError(ValueError):
    """Bytes that are not a batch of this layout (the message says what is wrong)."""


def encode_batch(batch: Batch, compression: str | None = None) -> bytes:
    """Arrow IPC stream bytes of ``batch`` (see the module docstring).

    Parameters
    ----------
    batch : Batch
    compression : {None, "lz4", "zstd"}
        Arrow IPC buffer compression (None: none; on loopback, none is fastest).
    """
    arrays, fields = [], []
    for name in COLUMNS:
        array = _to_arrow(name, getattr(batch, name))
        arrays.append(array)
        meta = {ENCODING_KEY: SURROGATEPASS} if name in STRING_COLUMNS and pa.types.is_binary(array.type) else None
        fields.append(pa.field(name, array.type, nullable=True, metadata=meta))
    meta = {VERSION_KEY: SCHEMA_VERSION.encode(), IGNORED_KEY: str(batch.ignored).encode()}
    schema = pa.schema(fields, metadata=meta)
    record_batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, schema, options=options) as writer:
        writer.write_batch(record_batch)
    return sink.getvalue().to_pybytes()


def _to_arrow(name: str, values: np.ndarray) -> pa.Array:
    if name in FLOAT_COLUMNS:
        return pa.array(np.ascontiguousarray(values, dtype=np.float64), type=pa.float64())
    if name == "fix":
        return pa.array(np.ascontiguousarray(values, dtype=np.int8), type=pa.int8())
    try:
        return _dictionary(values)
    except UnicodeEncodeError:  # a lone surrogate: keep it, as surrogatepass bytes
        return pa.array([None if v is None else v.encode("utf-8", "surrogatepass") for v in values.tolist()],
                        type=pa.binary())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise CodecError(f"column {name}: every value must be a str (or None): {exc}") from exc


def _dictionary(values: np.ndarray) -> pa.DictionaryArray:
    """Dictionary-encode a string column one *run* of equal values at a time: a SenML pack is one device, a
    column of absent values is one run, so this costs about one comparison per row (~8 ns) plus one dictionary
    lookup per run."""
    n = len(values)
    if n == 0:
        return pa.DictionaryArray.from_arrays(pa.array([], type=pa.int32()), pa.array([], type=pa.string()))
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    seen: dict = {}
    heads = [seen.setdefault(v, len(seen)) for v in values[starts].tolist()]
    indices = np.repeat(np.array(heads, dtype=np.int32), np.diff(np.append(starts, n)))
    words = list(seen)
    if None in seen:  # an Arrow null in the dictionary: mark the rows null instead
        mask = indices == seen[None]
        return pa.DictionaryArray.from_arrays(pa.array(indices, mask=mask),
                                              pa.array(words, type=pa.string()))
    return pa.DictionaryArray.from_arrays(pa.array(indices), pa.array(words, type=pa.string()))


def decode_batch(data: bytes) -> Batch:
    """The ``Batch`` encoded in ``data``; raises ``CodecError`` for anything else (never another exception)."""
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(data))
        table = reader.read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:  # every Arrow error of a bad stream
        raise CodecError(f"not an Arrow IPC stream: {exc}") from exc
    meta = table.schema.metadata or {}
    version = meta.get(VERSION_KEY, b"").decode("ascii", "replace")
    if version.split(".")[0] != SCHEMA_VERSION:
        raise CodecError(f"batch schema version {version or '(none)'!r}, this reader knows {SCHEMA_VERSION!r}")
    missing = [c for c in COLUMNS if c not in table.schema.names]
    if missing:
        raise CodecError(f"batch lacks the columns {missing}")
    try:
        ignored = int(meta.get(IGNORED_KEY, b"0"))
        columns = {c: _from_arrow(c, table.column(c), table.schema.field(c)) for c in COLUMNS}
        return Batch(**columns, ignored=ignored)
    except (ValueError, TypeError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise CodecError(f"bad batch column: {exc}") from exc


def _from_arrow(name: str, column: pa.ChunkedArray, field: pa.Field) -> np.ndarray:
    n = len(column)
    if name in FLOAT_COLUMNS or name == "fix":
        dtype = np.int8 if name == "fix" else np.float64
        if column.null_count or column.type != pa.from_numpy_dtype(dtype):
            raise CodecError(f"column {name} must be {np.dtype(dtype).name} without nulls, got {column.type}")
        out = np.empty(n, dtype=dtype)
        at = 0
        for chunk in column.chunks:
            out[at:at + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
            at += len(chunk)
        return out
    parts = [_strings(name, chunk, field) for chunk in column.chunks]
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


def _strings(name: str, chunk: pa.Array, field: pa.Field) -> np.ndarray:
    """An object array of the str values of one chunk of a string column."""
    if pa.types.is_dictionary(chunk.type) and chunk.null_count == 0:
        uniques = _strings(name, chunk.dictionary, field)
        return uniques[chunk.indices.to_numpy(zero_copy_only=False)] if len(uniques) else np.empty(0, dtype=object)
    if pa.types.is_dictionary(chunk.type):
        chunk = chunk.cast(chunk.type.value_type)
    if pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type):
        return np.asarray(chunk.to_numpy(zero_copy_only=False), dtype=object)
    if pa.types.is_binary(chunk.type) and (field.metadata or {}).get(ENCODING_KEY) == SURROGATEPASS:
        return np.array([None if v is None else v.decode("utf-8", "surrogatepass") for v in chunk.to_pylist()],
                        dtype=object)
    raise CodecError(f"column {name} must be utf8 strings, got {chunk.type}")


__all__ = ["CONTENT_TYPE", "SCHEMA_VERSION", "CodecError", "decode_batch", "encode_batch"]
