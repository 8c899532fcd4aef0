"""Fuzzing of every decoder and of the admission path (issue 13), bounded for CI (about half a minute).

Every decoder (SenML, NMEA 0183, JSON positions, acknowledgements, and the Beidou dispatcher) and the
admission step are fed near-valid messages with hostile values put in their fields -- integers of 400 and
5,000 digits, ``1e400``, NaN and Infinity literals, nesting 100,000 levels deep, strings of 70,000
characters -- as well as mutated and random bytes. Nothing raises, nothing is an internal error, nothing
logs a traceback, and every message is counted once: received = accepted + duplicates + rejected.
"""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.admission import Admission
from ingest.batch import Batch
from ingest.decoders import decode_ack, decode_beidou, decode_nmea, decode_position, decode_senml
from ingest.decoders.nmea import sentence
from ingest.rejection import MAX_DETAIL, MAX_FIELD, Reason, Rejection
from ingest.validation import Limits

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])

# --- hostile values ------------------------------------------------------------------------------------------

HUGE_INT = b"1" + b"0" * 400
TOO_MANY_DIGITS = b"7" * 5000  # beyond Python's 4,300-digit limit for int parsing
OUT_OF_RANGE_NUMBERS = [HUGE_INT, b"-" + b"9" * 400, b"1e400", b"-1E999", b"2" + b"0" * 308 + b".5"]  # beyond a float
BAD_SYNTAX_NUMBERS = [b"NaN", b"Infinity", b"-Infinity", TOO_MANY_DIGITS]
DEEP = b"[" * 100_000
DEEP_CLOSED = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 50_000
LONG_STRING = b'"' + b"x" * 70_000 + b'"'
HOSTILE = [*OUT_OF_RANGE_NUMBERS, *BAD_SYNTAX_NUMBERS, DEEP, DEEP_CLOSED, DEEP_OBJECT, LONG_STRING,
           b'"' + "\u202e\u0000\ud7ff".encode() * 1000 + b'"', b"[" * 900 + b"]" * 900, b"{}", b"[]", b"null",
           b"true", b"-0", b"1e-400", b'"\\ud800"']

# templates: each {} is a field a hostile value may replace; the valid tokens decode as accepted records
SENML = (b'[{"bn":%s,"n":%s,"u":%s,"v":%s,"t":%s}]', [b'"urn:dev:c0:"', b'"count"', b'"count"', b"3180", b"%.1f" % NOW])
SENML_PACK = (b'[{"bn":"urn:dev:t0:","bt":%s,"bv":%s,"n":"speed","u":"km/h","v":%s},{"n":"speed","v":%s,"t":%s}]',
              [b"%.1f" % NOW, b"0", b"40", b"41", b"1"])
POSITION = (b'{"id":%s,"t":%s,"lon":%s,"lat":%s,"speed_kmh":%s,"course":%s,"crs":%s}',
            [b'"v0"', b"%.1f" % NOW, b"121.49", b"31.24", b"22.5", b"90", b'"GCJ02"'])
POSITIONS = (b'[{"id":"v0","t":%s,"lon":121.49,"lat":31.24},{"id":"v0","t":%s,"lon":%s,"lat":%s}]',
             [b"%.1f" % NOW, b"%.1f" % (NOW + 1), b"121.5", b"31.25"])
ACK = (b'{"alert":%s,"status":%s,"t":%s}', [b'"citytwin.bund.crowd.20251231T142201Z.00001"', b'"ack"', b"%.1f" % NOW])
JSON_TEMPLATES = {"senml": SENML, "senml pack": SENML_PACK, "position": POSITION, "positions": POSITIONS, "ack": ACK}
NUMERIC_SLOTS = {"senml": [3, 4], "senml pack": [0, 1, 2, 3, 4], "position": [1, 2, 3, 4, 5], "positions": [0, 1, 2, 3],
                 "ack": [2]}
TOPICS = {"senml": "city/sensors/crowd/c0", "senml pack": "city/sensors/traffic/t0", "position": "city/beidou/v0",
          "positions": "city/beidou/v0", "ack": "city/units/u0/ack"}


def fill(template: tuple[bytes, list[bytes]], values: dict[int, bytes]) -> bytes:
    fmt, valid = template
    return fmt % tuple(values.get(i, v) for i, v in enumerate(valid))


def decoder_of(topic: str):
    if "/sensors/" in topic:
        return decode_senml
    return decode_ack if topic.endswith("/ack") else decode_beidou


# --- no traceback, no internal error ------------------------------------------------------------------------


class Errors(logging.Handler):
    """Collects every record at ERROR or above logged under ``ingest``."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def errors():
    handler = Errors()
    logger = logging.getLogger("ingest")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def check(out: Batch | Rejection) -> None:
    """A batch, or a rejection with a known reason and no sign of a bug."""
    assert type(out) in (Batch, Rejection), out
    if type(out) is Rejection:
        assert out.reason in Reason and len(out.digest) == 16
        assert not out.detail.startswith("internal"), out.detail
        assert len(out.detail) <= MAX_DETAIL and len(out.field) <= MAX_FIELD


def test_the_detector_sees_a_bug(errors, monkeypatch):
    """The checks above would catch an internal error: a decoder bug is logged at ERROR and says so."""
    from ingest.decoders import ack as ack_mod

    monkeypatch.setattr(ack_mod, "ack_records", lambda doc, unit: 1 / 0)
    out = decode_ack(b"{}", topic="city/units/u0/ack", received_at=NOW)
    with pytest.raises(AssertionError):
        check(out)
    assert len(errors) == 1 and errors[0].exc_info is not None


# --- the hostile shapes, one by one, with their reasons --------------------------------------------------------

NUMBER_CASES = [(name, slot, value, Reason.OUT_OF_RANGE) for name, slots in NUMERIC_SLOTS.items() for slot in slots
                for value in OUT_OF_RANGE_NUMBERS]
NUMBER_CASES += [(name, slot, value, Reason.BAD_SYNTAX) for name, slots in NUMERIC_SLOTS.items() for slot in slots
                 for value in BAD_SYNTAX_NUMBERS]


@pytest.mark.parametrize(("name", "slot", "value", "reason"), NUMBER_CASES,
                         ids=[f"{n}-{s}-{v[:12].decode()}-{len(v)}" for n, s, v, _ in NUMBER_CASES])
def test_a_number_no_float_holds_is_out_of_range_and_a_non_number_literal_bad_syntax(errors, name, slot, value, reason):
    topic = TOPICS[name]
    payload = fill(JSON_TEMPLATES[name], {slot: value})
    out = decoder_of(topic)(payload, topic=topic, received_at=NOW)
    check(out)
    assert isinstance(out, Rejection) and out.reason is reason, (payload[:80], out)
    adm = Admission(None, Limits(rate_per_s=0))
    got = adm.admit(topic, payload, NOW)
    assert isinstance(got, Rejection) and got.reason is reason
    assert adm.metrics.internal_errors == 0 and errors == []


@pytest.mark.parametrize("name", JSON_TEMPLATES)
@pytest.mark.parametrize("shape", [DEEP, DEEP_CLOSED, DEEP_OBJECT, b"[" * 100_000 + b"1" + b"]" * 100_000],
                         ids=["open arrays", "closed arrays", "open objects", "closed around a number"])
def test_nesting_100000_levels_deep_is_bad_syntax(errors, name, shape):
    topic = TOPICS[name]
    for payload in (shape, fill(JSON_TEMPLATES[name], {NUMERIC_SLOTS[name][0]: shape})):
        out = decoder_of(topic)(payload, topic=topic, received_at=NOW)
        check(out)
        assert isinstance(out, Rejection) and out.reason is Reason.BAD_SYNTAX
    assert errors == []


def test_very_long_strings_and_sentences_are_refused_with_a_short_detail(errors):
    long = "x" * 70_000
    cases = {
        ("city/sensors/crowd/c0", json.dumps([{"bn": "urn:dev:c0:", "n": long, "v": 1}])): Reason.BAD_SCHEMA,
        ("city/sensors/crowd/c0", json.dumps([{"bn": long, "n": "count", "v": 1}])): Reason.BAD_SCHEMA,
        ("city/sensors/crowd/c0", json.dumps([{"bn": "urn:dev:c0:", "n": "count", "v": long}])): Reason.BAD_SCHEMA,
        ("city/sensors/crowd/c0", json.dumps([{long: 1}])): Reason.BAD_SCHEMA,
        ("city/beidou/v0", json.dumps({"id": long, "t": NOW, "lon": 1, "lat": 1})): Reason.IDENTITY_MISMATCH,
        ("city/beidou/v0", json.dumps({"id": "v0", "t": NOW, "lon": 1, "lat": 1, long: 1})): Reason.BAD_SCHEMA,
        ("city/beidou/v0", json.dumps({"id": "v0", "t": NOW, "lon": 1, "lat": 1, "crs": long})): Reason.BAD_SCHEMA,
        ("city/units/u0/ack", json.dumps({"alert": long, "status": "ack", "t": NOW})): Reason.BAD_SCHEMA,
        ("city/units/u0/ack", json.dumps({"alert": "a", "status": long, "t": NOW})): Reason.BAD_SCHEMA,
        ("city/beidou/v0", sentence("GPGGA," + "1" * 70_000)): Reason.BAD_SYNTAX,
        ("city/beidou/v0", "$" + long): Reason.BAD_SYNTAX,
        ("city/sensors/crowd/c0", long): Reason.BAD_SYNTAX,
    }
    for (topic, text), reason in cases.items():
        out = decoder_of(topic)(text.encode(), topic=topic, received_at=NOW)
        check(out)
        assert isinstance(out, Rejection) and out.reason is reason, (topic, text[:60], out)
    assert errors == []


# --- every decoder, fuzzed ----------------------------------------------------------------------------------------

hostile_values = st.sampled_from(HOSTILE) | st.binary(max_size=40) | st.text(max_size=40).map(
    lambda s: json.dumps(s).encode()) | st.integers().map(lambda i: str(i).encode()) | st.floats().map(
    lambda x: json.dumps(x).encode())


@st.composite
def json_messages(draw, names=tuple(JSON_TEMPLATES)):
    """(topic, payload): a template with some of its fields replaced by hostile values."""
    name = draw(st.sampled_from(names))
    template = JSON_TEMPLATES[name]
    slots = draw(st.lists(st.integers(0, len(template[1]) - 1), max_size=3, unique=True))
    return TOPICS[name], fill(template, {i: draw(hostile_values) for i in slots})


NMEA_FIELDS = st.sampled_from(["", "1", "0", "-1", "9" * 300, "1e5", "nan", "inf", "Infinity", "1_0", " 1", "+1",
                               "3114.4300", "12129.1329", "N", "E", "S", "W", "A", "V", "142200.00", "311225",
                               "999999", "235960.99", "9999.9999", "99999.9999", "1.2.3", "--1"]) | st.text(
    st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="$*,\r\n"), max_size=12)
GGA = ["142200.00", "3114.4300", "N", "12129.1329", "E", "1", "14", "0.9", "4.0", "M", "8.3", "M", "", ""]
RMC = ["142200.00", "A", "3114.4300", "N", "12129.1329", "E", "9.72", "185.0", "311225", "", "", "A", "V"]
GNS = ["142200.00", "3114.4300", "N", "12129.1329", "E", "AN", "14", "0.9", "4.0", "8.3", "", "", "V"]
VTG = ["185.0", "T", "", "M", "9.72", "N", "18.0", "K", "A"]


@st.composite
def nmea_messages(draw):
    """Sentences with a correct checksum (so they get past it) and hostile fields, or damaged ones."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        kind, fields = draw(st.sampled_from([("GGA", GGA), ("RMC", RMC), ("GNS", GNS), ("VTG", VTG), ("GSV", ["3"])]))
        fields = list(fields)
        for _ in range(draw(st.integers(0, 3))):
            fields[draw(st.integers(0, len(fields) - 1))] = draw(NMEA_FIELDS)
        if draw(st.booleans()):
            fields = fields[: draw(st.integers(0, len(fields)))]
        talker = draw(st.sampled_from(["GB", "BD", "GN", "GP", "GL", "GA", "QZ", "P", "G"]))
        line = sentence(",".join([talker + kind, *fields]))
        if draw(st.integers(0, 9)) == 0:  # a damaged sentence
            k = draw(st.integers(0, len(line) - 1))
            line = line[:k] + draw(st.sampled_from(["", "*", "$", "\n", "Z", "é"])) + line[k + 1:]
        out.append(line)
    return "city/beidou/v0", draw(st.sampled_from(["\r\n", "\n", "\r", " "])).join(out).encode("utf-8")


mutated = st.tuples(st.sampled_from([fill(t, {}) for t in JSON_TEMPLATES.values()]), st.integers(0, 200),
                    st.binary(max_size=3)).map(lambda x: x[0][: x[1]] + x[2] + x[0][x[1] + len(x[2]):])
any_bytes = st.binary(max_size=400) | mutated | st.sampled_from(HOSTILE)


@FUZZ
@given(json_messages(("senml", "senml pack")) | st.tuples(st.just("city/sensors/crowd/c0"), any_bytes))
def test_senml_never_raises(errors, message):
    topic, payload = message
    check(decode_senml(payload, topic=topic, received_at=NOW))
    assert errors == []


@FUZZ
@given(nmea_messages() | st.tuples(st.just("city/beidou/v0"), st.binary(max_size=400).map(lambda b: b"$" + b)))
def test_nmea_never_raises(errors, message):
    topic, payload = message
    check(decode_nmea(payload, topic=topic, received_at=NOW))
    check(decode_beidou(payload, topic=topic, received_at=NOW))
    assert errors == []


@FUZZ
@given(json_messages(("position", "positions")) | st.tuples(st.just("city/beidou/v0"), any_bytes))
def test_json_positions_never_raise(errors, message):
    topic, payload = message
    check(decode_position(payload, topic=topic, received_at=NOW))
    check(decode_beidou(payload, topic=topic, received_at=NOW))
    assert errors == []


@FUZZ
@given(json_messages(("ack",)) | st.tuples(st.just("city/units/u0/ack"), any_bytes))
def test_acks_never_raise(errors, message):
    topic, payload = message
    check(decode_ack(payload, topic=topic, received_at=NOW))
    assert errors == []


# --- the admission path, fuzzed ------------------------------------------------------------------------------


def crowd(dev: str, t: float, v: float) -> bytes:
    return json.dumps([{"bn": f"urn:dev:{dev}:", "n": "count", "v": v, "t": t}]).encode()


@st.composite
def valid_messages(draw):
    """A valid message of a device of the small registry (conftest), at a time near NOW."""
    t = NOW + draw(st.integers(-3600, 60)) + draw(st.sampled_from([0.0, 0.5, 0.25]))
    kind = draw(st.sampled_from(["crowd", "pack", "nmea", "position", "ack"]))
    if kind == "crowd":
        dev = draw(st.sampled_from(["c0", "c1", "c2"]))
        return f"city/sensors/crowd/{dev}", crowd(dev, t, draw(st.integers(0, 5000)))
    if kind == "pack":
        return "city/sensors/traffic/t0", fill(SENML_PACK, {0: b"%.2f" % t, 4: b"%d" % draw(st.integers(-5, 5))})
    if kind == "nmea":
        return "city/beidou/v1", b"\r\n".join(sentence(",".join(["GNGGA", *GGA])).encode() for _ in range(1))
    if kind == "position":
        return "city/beidou/v0", fill(POSITION, {1: b"%.2f" % t})
    return "city/units/u0/ack", fill(ACK, {2: b"%.2f" % t})


@st.composite
def traffic(draw):
    """(topic, payload, received_at) of valid, hostile, mutated and redelivered messages, in receive order."""
    msgs, at = [], NOW
    for _ in range(draw(st.integers(1, 60))):
        at += draw(st.sampled_from([0.0, 0.001, 0.05, 1.0, 30.0]))
        pick = draw(st.integers(0, 9))
        if pick < 4:
            topic, payload = draw(valid_messages())
        elif pick < 6:
            topic, payload = draw(json_messages())
        elif pick == 6:
            topic, payload = draw(nmea_messages())
        elif pick == 7 and msgs:
            topic, payload, _ = draw(st.sampled_from(msgs))  # a redelivery
        else:
            topic = draw(st.sampled_from(["city/sensors/crowd/c0", "city/beidou/v0", "city/units/u0/ack",
                                          "city/sensors/crowd/nobody", "city/units/v0/ack", "city/x", ""]))
            payload = draw(any_bytes)
        msgs.append((topic, payload, at))
    return msgs


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow, HealthCheck.data_too_large])
@given(traffic(), st.sampled_from([Limits(), Limits(rate_per_s=2, burst=3), Limits(rate_per_s=0)]), st.booleans())
def test_the_admission_path_counts_every_message_once_and_never_fails(errors, registry, msgs, limits, with_registry):
    adm = Admission(registry if with_registry else None, limits)
    refused: dict[str, int] = {}
    passed = records = 0
    for topic, payload, at in msgs:
        out = adm.admit(topic, payload, at)
        check(out)
        if isinstance(out, Rejection):
            refused[out.reason.value] = refused.get(out.reason.value, 0) + 1
        else:
            passed += 1
            records += len(out)
    m = adm.metrics.snapshot()
    assert m["internal_errors"] == 0 and errors == []
    assert m["received"] == len(msgs) == m["accepted"] + m["duplicates"] + m["rejected_total"]
    assert {k: v for k, v in m["rejected"].items() if v} == refused
    assert m["accepted"] + m["duplicates"] == passed and m["accepted_records"] == records
