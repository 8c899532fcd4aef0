"""The batched SenML fast path (issue 19) gives exactly what the reference path gives.

Three layers, each against its reference, on arbitrary input with bad records mixed in:

* JSON: ``load_json`` (``orjson`` first) against ``load_json_reference`` (the standard library alone): the same
  value, with the same types and the same float bits, or the same refusal;
* decoding: ``senml_records`` (one-record path, pack fast path) against ``senml_records_reference`` (record by
  record): the same ``Batch`` bit for bit, or the same refusal (reason, detail, field);
* admission: a sequence of packs, redeliveries and bad packs through ``Admission`` as it runs, and through an
  ``Admission`` whose decoding is the reference: the same batches, the same rejections, the same counters; and the
  records accepted are exactly those whose key was not accepted before.
"""

from __future__ import annotations

import json
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import admission as admission_mod
from ingest.admission import Admission
from ingest.batch import COLUMNS, FLOAT_COLUMNS, Batch
from ingest.decoders import SHALLOW_DEPTH, row_batch, senml_payload_records, senml_records
from ingest.decoders._common import load_json, load_json_reference
from ingest.decoders.senml import senml_records_reference
from ingest.decoders.units import QUANTITIES
from ingest.registry import registry_from_geojson
from ingest.rejection import Reason, Refusal, Rejection
from ingest.validation import Limits
from tests.ingest.conftest import feature

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC
DEVICE = "ld-7"
TOPIC = f"city/sensors/traffic/{DEVICE}"

# Literals json.dumps cannot write, put in place of these marker strings after dumping.
LITERALS = {
    "@inf@": "1e400",  # the standard library reads an infinity, orjson refuses it
    "@big@": "123456789012345678901234567890",  # beyond 64 bits: an int in the reference, a float in orjson
    "@u64@": "18446744073709551615",  # the largest unsigned 64-bit integer
    "@i64@": "-9223372036854775809",  # one below the smallest signed 64-bit integer
    "@huge@": "1" + "0" * 400,  # an int no float holds
    "@negzero@": "-0",
    "@exp@": "1E2",
    "@long@": "0.1000000000000000055511151231257827",  # more digits than a float keeps
    "@sur@": '"\\ud800"',  # a lone surrogate escape: the reference reads it, orjson refuses it
}


def dumps(doc: Any) -> bytes:
    """``doc`` as JSON, with the markers of ``LITERALS`` replaced by their literal."""
    text = json.dumps(doc, separators=(",", ":"))
    for marker, literal in LITERALS.items():
        text = text.replace(json.dumps(marker), literal)
    return text.encode()


@dataclass(frozen=True)
class Refused:
    """A ``Refusal`` raised, as a value."""

    reason: Reason
    detail: str
    field: str


def outcome(fn, *args, **kwargs) -> Any:
    """What ``fn`` returns, or the ``Refused`` it raised."""
    try:
        return fn(*args, **kwargs)
    except Refusal as bad:
        return Refused(bad.reason, bad.detail, bad.field)


def same_json(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down, floats bit for bit (iterative: documents may be nested
    deeper than the interpreter's recursion limit)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if type(x) is float:
            if struct.pack("<d", x) != struct.pack("<d", y):
                return False
        elif type(x) is list:
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif type(x) is dict:
            if list(x) != list(y):
                return False
            stack.extend((x[k], y[k]) for k in x)
        elif x != y:
            return False
    return True


def assert_same_batch(a: Batch, b: Batch) -> None:
    """Every column equal, floats bit for bit (NaN and -0.0 included), strings as the same values and types."""
    assert len(a) == len(b) and a.ignored == b.ignored
    for c in COLUMNS:
        x, y = getattr(a, c), getattr(b, c)
        assert x.dtype == y.dtype, c
        if c in FLOAT_COLUMNS:
            assert x.view(np.uint64).tolist() == y.view(np.uint64).tolist(), c
        else:
            assert x.tolist() == y.tolist(), c
            assert [type(v) for v in x.tolist()] == [type(v) for v in y.tolist()], c


def assert_same_outcome(fast: Any, ref: Any) -> None:
    """The same refusal, rejection or records (a ``Row`` stands for its one-record ``Batch``)."""
    if isinstance(ref, Refused):
        assert fast == ref
    elif isinstance(ref, Rejection):
        assert isinstance(fast, Rejection) and (fast.reason, fast.detail, fast.field, fast.digest) == (
            ref.reason, ref.detail, ref.field, ref.digest)
    else:
        assert isinstance(fast, Batch | tuple), fast
        assert_same_batch(*(row_batch(x) if type(x) is tuple else x for x in (fast, ref)))


# --- strategies --------------------------------------------------------------------------------------

numbers = (
    st.floats(-1e3, 1e3) | st.integers(-10, 30_000) | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 0, 1.7e9, 2.0**28, 2.0**28 - 1, "@inf@", "@big@", "@u64@", "@i64@", "@huge@",
                       "@negzero@", "@exp@", "@long@"])
)
bad_scalars = st.sampled_from([None, True, False, "7", "", [], {}, [1], {"v": 1}, "@sur@"])
names = st.sampled_from(["speed", "flow", "occ"])
bad_names = st.sampled_from(["", "rain", "speed ", "sp eed", "urn:dev:ld-7:speed", ":speed", 7, None, True, ["n"],
                             "speed\n", "@sur@"])
times = st.floats(-100, 100) | st.integers(0, 10**6) | st.sampled_from(
    [0, -0.0, 1.7e9, 2.0**28, -(2.0**28), 1e308, "@big@", "@inf@", "@negzero@", 9_007_199_254_740_993])
TIME_EDGES = [2.0**28, -(2.0**28), 2.0**28 - 1, float(np.nextafter(2.0**28, 0)), 2**28, 1e308, -1e308]
"""Times on the edge of the relative-time rule (RFC 8428 4.5.3), and two whose sum is no finite number [s]."""
small = st.floats(0, 1) | st.integers(0, 1) | st.sampled_from([-0.0, 0, "@negzero@", "@long@", 5e-324])
edges = st.floats(0, 300) | st.integers(0, 300) | st.sampled_from([300, 300.0000001, -1e-300, 20_000, 100])
speeds = small | edges

base_names = st.sampled_from([f"urn:dev:{DEVICE}:", f"urn:dev:{DEVICE}:", f"urn:dev:{DEVICE}:", "urn:dev:other:",
                              f"urn:dev:{DEVICE}", "urn:dev:", "", 5, None, f"urn:dev:{DEVICE}:speed"])
units = st.sampled_from(["km/h", "km/h", "m/s", "1/h", "%", "", "furlong", None, 3])


@st.composite
def good_heads(draw) -> dict[str, Any]:
    """A valid first record: the device's base name, a base time, a base unit for the speeds after it, and its
    own quantity, value, unit and time."""
    n = draw(names)
    head: dict[str, Any] = {"bn": f"urn:dev:{DEVICE}:", "n": n, "v": draw(small)}
    head["bt"] = draw(st.sampled_from([NOW - 50, 1.7e9, 0, -0.0, 100.5, NOW + 0.001, *TIME_EDGES])
                      | st.integers(0, 10**6))
    if draw(st.integers(0, 4)):
        head["bu"] = draw(st.sampled_from(["km/h", "m/s"]))
    if n != "speed" or "bu" not in head or draw(st.booleans()):
        head["u"] = draw(st.sampled_from(sorted(QUANTITIES[n].factors)))
    if draw(st.booleans()):
        head["t"] = draw(st.floats(-1e4, 1e4) | st.sampled_from([0, -0.0, "@negzero@", "@exp@"]))
    if draw(st.integers(0, 3)) == 0:
        head["bver"] = draw(st.sampled_from([1, 5, 10, 10, 11, 0]))  # 11 and 0 are refused
    return head


@st.composite
def wild_heads(draw) -> dict[str, Any]:
    """A first record with any of its fields missing, odd or bad."""
    head: dict[str, Any] = {"bn": draw(base_names), "n": draw(names | bad_names), "v": draw(speeds | numbers)}
    optional = {
        "bt": st.sampled_from([1.7e9, NOW - 50, 0, -0.0, 100.5, 1e308]) | numbers | bad_scalars,
        "bu": units, "u": units, "t": times | bad_scalars,
        "bver": st.sampled_from([1, 5, 10, 11, 0, -1, True, 5.0, "@big@", "10"]),
        "bv": st.sampled_from([0, 1.5]), "s": st.just(1), "x_": st.just(1), "vb": st.just(True),
    }
    for key, values in optional.items():
        if draw(st.integers(0, 9)) < (6 if key in ("bt", "bu", "t") else 1):
            head[key] = draw(values)
    if draw(st.integers(0, 19)) == 0:
        del head[draw(st.sampled_from(["bn", "n", "v"]))]
    return head


@st.composite
def good_record(draw, timed: bool, united: bool, multi: bool, values: st.SearchStrategy = small) -> dict[str, Any]:
    """A valid record after the first (a value of at most 1 is within range in any accepted unit): a speed (or,
    ``multi``, any traffic quantity), with its own unit (one accepted for its quantity) when ``united``, and a
    time when ``timed``; ``values`` may make it out of range."""
    n = draw(names) if multi else "speed"
    rec: dict[str, Any] = {"n": n, "v": draw(values)}
    if timed:
        rec["t"] = draw(st.floats(-1e4, 1e4) | st.integers(-10**4, 10**4) | st.sampled_from(TIME_EDGES))
    if united:
        rec["u"] = draw(st.sampled_from(sorted(QUANTITIES[n].factors)))
    return rec


def good_records(timed: bool, multi: bool, united: bool = False, values: st.SearchStrategy = small):
    return good_record(timed, united, multi, values)


heads = good_heads() | wild_heads()
bad_records = st.one_of(
    st.fixed_dictionaries({"n": names, "v": edges, "t": times}),  # on the edge of the range, or beyond
    st.fixed_dictionaries({"n": bad_names, "v": speeds, "t": times}),
    st.fixed_dictionaries({"n": names, "v": numbers | bad_scalars, "t": times}),
    st.fixed_dictionaries({"n": names, "v": speeds, "t": times | bad_scalars}),
    st.fixed_dictionaries({"n": names, "v": speeds}),  # no t where the others have one, or the other way
    st.fixed_dictionaries({"n": names, "v": speeds, "t": times, "u": units | bad_scalars}),
    st.fixed_dictionaries({"n": names, "t": times, "vs": st.just("x")}),
    st.fixed_dictionaries({"n": names, "v": speeds, "x": st.just(1)}),
    st.fixed_dictionaries({"v": speeds, "t": times}),
    st.fixed_dictionaries({"bn": base_names, "n": names, "v": speeds}),
    st.sampled_from([None, 1, "x", [], [{"n": "speed", "v": 1}], {}]),
)


@st.composite
def packs(draw) -> list[Any]:
    """A pack of 2-40 records as gateways send them, with 0-2 bad records mixed in at any place."""
    timed, multi, united = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    values = draw(st.sampled_from([small, small, edges]))  # some packs with values out of range
    pack = [draw(heads), *draw(st.lists(good_records(timed, multi, united, values), min_size=1, max_size=39))]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        pack.insert(draw(st.integers(0, len(pack))), draw(bad_records))
    return pack


# --- JSON ------------------------------------------------------------------------------------------

NUMBER_LITERAL = rb"\A-?[0-9]{1,25}(\.[0-9]{1,25})?([eE][-+]?[0-9]{1,3})?\Z"
json_docs = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
    | st.sampled_from(sorted(LITERALS)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["a", "b", "n", "v"]), inner,
                                                                 max_size=3),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(json_docs.map(dumps) | st.binary(max_size=60) | st.from_regex(NUMBER_LITERAL))
def test_load_json_is_the_standard_librarys(payload):
    fast, ref = outcome(load_json, payload), outcome(load_json_reference, payload)
    assert fast == ref if isinstance(ref, Refused) else same_json(fast, ref), (payload, fast, ref)


def nested(depth: int, inner: bytes = b"1", opener: bytes = b"[") -> bytes:
    """``depth`` levels of arrays (``opener`` ``[``) or objects (``{"a":``) around ``inner``. One kind only: the
    standard library's refusal names the kind of container where the recursion limit stopped it."""
    closer = b"]" if opener == b"[" else b"}"
    return opener * depth + inner + closer * depth


DEPTHS = [2, SHALLOW_DEPTH, SHALLOW_DEPTH + 1, 600, 900, 1000, 1020, 1024, 1030]
"""Nesting depths the standard library parses from any caller (up to 900) or refuses from any (1,000 and more):
between the two its answer depends on how deep the caller's stack is."""


@pytest.mark.parametrize("depth", DEPTHS)
def test_deep_documents_are_parsed_or_refused_as_the_standard_library_does(depth):
    """orjson parses 1,024 levels, the standard library as many as the interpreter's recursion limit leaves: deeper
    than ``SHALLOW_DEPTH`` the reference decides. Padding makes the payload large (the nesting then is checked)."""
    for opener in (b"[", b'{"a":'):
        for payload in (nested(depth, opener=opener), nested(depth, b'"' + b"x" * 600 + b'"', opener),
                        b"[" + b"0," * 300 + nested(depth - 1, opener=opener) + b"]"):
            fast, ref = outcome(load_json, payload), outcome(load_json_reference, payload)
            assert fast == ref if isinstance(ref, Refused) else same_json(fast, ref), (depth, payload[:20], fast, ref)


@pytest.mark.parametrize("depth", DEPTHS)
def test_a_pack_with_a_deep_record_is_decoded_as_the_reference_does(depth):
    pack = dumps(base_pack() * 30)
    for opener in (b"[", b'{"a":'):
        for payload in (pack[:-1] + b"," + nested(depth - 1, opener=opener) + b"]",
                        b"[" + nested(depth - 1, opener=opener) + b"," + pack[1:]):
            assert_same_outcome(*decode_both(payload))


def test_load_json_duplicate_keys_keep_the_first_place_and_the_last_value():
    assert list(load_json(b'{"b":1,"a":2,"b":3}').items()) == [("b", 3), ("a", 2)]


# --- decoding --------------------------------------------------------------------------------------


def reference_records(payload: bytes, **where: Any) -> Batch:
    """The reference decoding of a payload: the standard library's JSON, then record by record."""
    return senml_records_reference(load_json_reference(payload), **where)


def decode_both(payload: bytes) -> tuple[Any, Any]:
    """The payload decoded as the admission step decodes a pack (``senml_payload_records``), and by the reference;
    decoding the parsed document (``senml_records(load_json(...))``) gives the same as the first."""
    where = {"kind": "traffic", "device": DEVICE, "received_at": NOW}
    fast = outcome(senml_payload_records, payload, **where)
    assert_same_outcome(outcome(lambda: senml_records(load_json(payload), **where)), fast)
    return fast, outcome(reference_records, payload, **where)


@settings(max_examples=400, deadline=None)
@given(packs())
def test_pack_fast_path_is_the_reference(pack):
    assert_same_outcome(*decode_both(dumps(pack)))


@settings(max_examples=200, deadline=None)
@given(st.lists(good_records(True, True, True), min_size=1, max_size=30), good_heads())
def test_good_packs_are_decoded_alike(recs, head):
    """Mostly valid packs (the fast path's own ground), so that most examples give batches."""
    assert_same_outcome(*decode_both(dumps([head, *recs])))


@st.composite
def odd_records(draw, timed: bool, united: bool, multi: bool) -> Any:
    """A record of a good pack's shape with one field bad, or with one key more or less, or no object at all."""
    rec = draw(good_record(timed, united, multi))
    how = draw(st.sampled_from(["n", "v", "t", "u", "add", "drop", "other"]))
    if how == "n":
        rec["n"] = draw(bad_names)
    elif how == "v":
        rec["v"] = draw(numbers | bad_scalars | edges)
    elif how == "t" and timed:
        rec["t"] = draw(times | bad_scalars)
    elif how == "u" and united:
        rec["u"] = draw(units | bad_scalars)
    elif how == "add":
        key = draw(st.sampled_from(["t", "u", "x", "bn", "bt", "bu", "bver", "vs", "s", "x_"]))
        rec[key] = draw(st.sampled_from([1, "speed", "km/h", f"urn:dev:{DEVICE}:", 2.5]))
    elif how == "drop":
        del rec[draw(st.sampled_from(sorted(rec)))]
    else:
        return draw(st.sampled_from([None, 1, "x", [], [rec], {}]))
    return rec


@settings(max_examples=400, deadline=None)
@given(st.booleans(), st.booleans(), st.booleans(), good_heads(), st.data())
def test_one_odd_record_in_a_good_pack(timed, multi, united, head, data):
    """A good pack but for one record with a bad field or of another shape, at any place after the first: the
    fast path must not take it as one of the others."""
    pack = [head, *data.draw(st.lists(good_records(timed, multi, united), min_size=2, max_size=20))]
    pack.insert(data.draw(st.integers(1, len(pack))), data.draw(odd_records(timed, united, multi)))
    assert_same_outcome(*decode_both(dumps(pack)))


def base_pack() -> list[dict[str, Any]]:
    return [{"bn": f"urn:dev:{DEVICE}:", "bt": NOW - 60, "bu": "km/h", "n": "speed", "v": 40, "t": 0},
            *({"n": "speed", "v": 30 + k, "t": k} for k in range(1, 5))]


def with_field(index: int, key: str, value: Any) -> list[dict[str, Any]]:
    pack = base_pack()
    pack[index][key] = value
    return pack


def without_field(index: int, key: str) -> list[dict[str, Any]]:
    pack = base_pack()
    del pack[index][key]
    return pack


EDGE_PACKS = {
    **{f"t={v!r}": with_field(2, "t", v) for v in [True, "7", None, [], "@inf@", "@big@", "@huge@", "@u64@", "@i64@",
                                                  "@negzero@", -0.0, 2**53 + 1, 2.0**28, -(2.0**28), 1e308]},
    **{f"v={v!r}": with_field(2, "v", v) for v in [True, False, "7", None, {}, "@big@", "@u64@", "@huge@", "@inf@",
                                                  "@negzero@", -0.0, 5e-324, 300, 300.0000001, -1e-300, 2**53 + 1]},
    **{f"n={v!r}": with_field(3, "n", v) for v in [7, None, ["n"], "speed ", "", "flow", "rain", "speed\n"]},
    **{f"head {k}={v!r}": with_field(0, k, v) for k, v in [
        ("bt", 1e308), ("bt", "@big@"), ("bt", True), ("bver", 11), ("bver", 0), ("bver", True), ("bver", 10),
        ("u", "m/s"), ("u", "1/h"), ("u", None), ("bu", "m/s"), ("bu", None), ("bn", "urn:dev:other:"),
        ("v", "@negzero@"), ("t", 2.0**28), ("x_", 1), ("bv", 1.0), ("s", 1), ("vb", True)]},
    **{f"record {k}={v!r}": with_field(1, k, v) for k, v in [
        ("u", "m/s"), ("u", "furlong"), ("x", 1), ("bn", "urn:dev:other:"), ("bt", 5), ("vs", "x"), ("s", 1),
        ("x_", 1)]},
    **{f"no {k}": without_field(i, k) for i, k in [(1, "n"), (1, "v"), (1, "t"), (4, "t"), (0, "t"), (0, "bt")]},
    "not an object": [*base_pack(), 1],
    "time overflows": [*with_field(0, "bt", 1e308)[:2], {"n": "speed", "v": 1, "t": 1e308}],
}


@pytest.mark.parametrize("pack", EDGE_PACKS.values(), ids=EDGE_PACKS.keys())
def test_edge_packs_are_decoded_alike(pack):
    assert_same_outcome(*decode_both(dumps(pack)))


def test_edge_packs_give_batches_and_refusals():
    """The edge packs are not all refused (nor all taken): both kinds of outcome are compared."""
    refused = {k for k, p in EDGE_PACKS.items() if isinstance(decode_both(dumps(p))[1], Refused)}
    assert {"t=True", "v='7'", "v=True", "time overflows", "head bver=11", "record x_=1"} <= refused
    assert not {"v=-0.0", "v='@negzero@'", "t='@u64@'", "head bver=10", "record x=1", "no t"} & refused


def test_fast_path_takes_the_plain_pack():
    """The benchmark's shape is decoded by the fast path (not by falling back), with relative times."""
    from ingest.decoders import senml

    pack = [{"bn": f"urn:dev:{DEVICE}:", "bt": NOW - 10, "bu": "m/s", "n": "speed", "v": 10, "t": 0}]
    pack += [{"n": "speed", "v": k % 80, "t": k * 1e-3} for k in range(1, 100)]
    fast = senml._fast_columns(load_json(dumps(pack)), NOW, "traffic", DEVICE)
    assert fast is not None
    assert_same_batch(fast, senml_records_reference(pack, kind="traffic", device=DEVICE, received_at=NOW))
    assert fast.value[1] == 3.6 and fast.t[1] == NOW - 10 + 1e-3  # 1 m/s = 3.6 km/h
    mixed = [pack[0], *({"n": "flow" if k % 2 else "speed", "v": k, "t": k * 1e-3} for k in range(1, 100))]
    assert senml._fast_columns(load_json(dumps(mixed)), NOW, "traffic", DEVICE) is None  # flow is not in m/s
    mixed = [pack[0], *({**r, "u": "1/min" if r["n"] == "flow" else "km/h"} for r in mixed[1:])]
    fast = senml._fast_columns(load_json(dumps(mixed)), NOW, "traffic", DEVICE)
    assert fast is not None
    assert_same_batch(fast, senml_records_reference(mixed, kind="traffic", device=DEVICE, received_at=NOW))
    assert fast.quantity.tolist()[:3] == ["speed", "flow", "speed"] and fast.value[1:3].tolist() == [60.0, 2.0]


# --- admission -------------------------------------------------------------------------------------


@contextmanager
def reference_decoding():
    """``Admission`` decoding by the reference paths (the standard library's JSON, record by record)."""
    saved = admission_mod.load_json, admission_mod.senml_records, admission_mod.senml_payload_records
    admission_mod.load_json = load_json_reference
    admission_mod.senml_records = senml_records_reference
    admission_mod.senml_payload_records = reference_records
    try:
        yield
    finally:
        admission_mod.load_json, admission_mod.senml_records, admission_mod.senml_payload_records = saved


@pytest.fixture(scope="module")
def registry():
    return registry_from_geojson({"type": "FeatureCollection", "features": [
        feature(DEVICE, "traffic", ["speed", "flow"]), feature("c0", "crowd", ["count"])]})


def good_pack(start: int, n: int, step: float) -> list[dict[str, Any]]:
    pack = [{"bn": f"urn:dev:{DEVICE}:", "bt": NOW - 100 + start * step, "bu": "km/h", "n": "speed", "v": 40, "t": 0}]
    return pack + [{"n": "speed", "v": 30 + k % 50, "t": k * step, "u": "km/h"} if k % 3 else
                   {"n": "flow", "v": 30 + k % 50, "t": k * step, "u": "1/h"} for k in range(1, n)]


messages = st.lists(
    st.one_of(
        st.builds(good_pack, st.integers(0, 30), st.integers(1, 30), st.sampled_from([1.0, 0.5])),
        packs(),
    ),
    min_size=1, max_size=8,
)


@settings(max_examples=100, deadline=None)
@given(messages, st.randoms(use_true_random=False))
def test_admission_of_packs_is_the_reference(registry, msgs, rnd):
    """Packs, overlapping packs and exact redeliveries of them, bad packs and bad records mixed in, admitted in
    the same order by both: the same outcome for each and the same counters; the records accepted are those
    whose key was never accepted before (the dedupe memory does not forget within the test)."""
    payloads = [dumps(m) for m in msgs]
    payloads += [rnd.choice(payloads) for _ in range(len(payloads) // 2)]
    limits = Limits(max_age_s=1e6, max_future_s=1e6, rate_per_s=1e3, burst=1e3)
    fast_adm, ref_adm = Admission(registry, limits), Admission(registry, limits)
    fast = [fast_adm.admit(TOPIC, p, NOW) for p in payloads]
    with reference_decoding():
        ref = [ref_adm.admit(TOPIC, p, NOW) for p in payloads]
    seen: set[tuple] = set()
    for f, r in zip(fast, ref, strict=True):
        assert_same_outcome(f, r)
        if isinstance(f, Batch):
            keys = f.keys()
            assert not seen.intersection(keys) and len(set(keys)) == len(keys)
            seen.update(keys)
    assert fast_adm.metrics.snapshot() == ref_adm.metrics.snapshot()
