"""Recorded feeds for ``twin replay`` (`twin.live.replay`): JSONL lines and raw logs read, checked and merged; the
replay clock; records paced on it. No broker: the replay through the twin is in tests/test_replay_cli.py."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.rawlog import RawLog
from tests.support.waits import wait_until
from twin.live.replay import (
    MAX_T,
    FeedRecord,
    ReplayClock,
    Replayer,
    Skip,
    Skipped,
    encode_line,
    feed_sources,
    first_time,
    last_logged_time,
    merge_by_time,
    parse_line,
    parse_time,
    read_feed,
    read_jsonl,
    read_lines,
    read_raw_log,
    topic_filter,
)
from twin.live.service import TwinClock

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2024, 12, 31, 23, 50, tzinfo=SHANGHAI).timestamp()
PROBLEMS = {r for r in Skip if r.is_problem}

topics = st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/+#\x00"),
                          min_size=1, max_size=8), min_size=1, max_size=4).map("/".join)
records = st.builds(FeedRecord, t=st.floats(0, MAX_T), topic=topics, payload=st.binary(max_size=64),
                    where=st.just("f:1"))


# ---------------------------------------------------------------- lines
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200).filter(lambda b: b"\n" not in b))
def test_any_line_is_a_record_or_skipped_with_a_reason_never_an_error(line):
    item = parse_line(line, "f:7")
    assert isinstance(item, FeedRecord | Skipped)
    if isinstance(item, Skipped):
        assert item.where == "f:7" and item.reason in Skip and item.detail and "\n" not in item.detail


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=8)
objects = st.fixed_dictionaries({}, optional={
    "topic": st.one_of(topics, json_values), "payload": st.one_of(st.text(max_size=40), json_values),
    "payload_b64": st.one_of(st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()), json_values),
    "t": st.one_of(st.floats(), st.integers(), st.datetimes(timezones=st.timezones()).map(dt.datetime.isoformat),
                   json_values)})


@settings(max_examples=400, deadline=None)
@given(objects)
def test_an_object_is_a_record_exactly_when_topic_payload_and_time_are_good(doc):
    item = parse_line(json.dumps(doc).encode(), "f:1")
    if isinstance(item, FeedRecord):
        assert item.topic == doc["topic"] and item.t == parse_time(doc["t"])
        assert ("payload" in doc) != ("payload_b64" in doc)
        assert item.payload == (doc["payload"].encode() if "payload" in doc else base64.b64decode(doc["payload_b64"]))
        return
    assert item.reason in {Skip.BAD_TOPIC, Skip.BAD_PAYLOAD, Skip.BAD_TIME}, item
    good_topic = isinstance(doc.get("topic"), str) and doc["topic"] and not set(doc["topic"]) & set("+#\x00")
    text_payload = "payload_b64" not in doc and isinstance(doc.get("payload"), str)
    number_t = (isinstance(doc.get("t"), int | float) and not isinstance(doc["t"], bool)
                and 0 <= doc["t"] <= MAX_T)
    assert not (good_topic and text_payload and number_t), (doc, item)


@settings(max_examples=300, deadline=None)
@given(records)
def test_encode_then_parse_gives_the_record_back(record):
    line = encode_line(record)
    assert b"\n" not in line
    assert parse_line(line, "f:1") == record


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(records.map(encode_line), st.binary(max_size=60).filter(lambda b: b"\n" not in b)),
                max_size=30))
def test_every_line_of_a_file_is_fed_or_counted_with_its_line_number(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("jsonl") / "feed.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    problems = []
    stats = Replayer(TwinClock(1e9, start=MAX_T), lambda topic, payload: None, accepts=lambda topic: True,
                     on_problem=problems.append).run(read_jsonl(path))
    lines_read = [line.removeprefix(b"\xef\xbb\xbf") if i == 0 else line for i, line in enumerate(lines)]
    good = [parse_line(line.rstrip(b"\r"), "") for line in lines_read]
    n_records = sum(isinstance(g, FeedRecord) for g in good)
    assert stats.finished and stats.fed == n_records
    assert stats.fed + sum(stats.skipped.values()) == len(lines)
    assert [int(p.where.split(":")[1]) for p in problems] == [
        i for i, g in enumerate(good, start=1) if isinstance(g, Skipped) and g.reason.is_problem]


def test_what_each_bad_line_is_skipped_for():
    cases = {
        b"not json": Skip.NOT_JSON, b"[1, 2]": Skip.NOT_OBJECT, b"\xff\xfe": Skip.NOT_UTF8, b"   ": Skip.BLANK,
        b'{"payload": "x", "t": 1}': Skip.BAD_TOPIC,
        b'{"topic": "city/a/#", "payload": "x", "t": 1}': Skip.BAD_TOPIC,
        b'{"topic": "a", "t": 1}': Skip.BAD_PAYLOAD,
        b'{"topic": "a", "payload": "x", "payload_b64": "eA==", "t": 1}': Skip.BAD_PAYLOAD,
        b'{"topic": "a", "payload": {"v": 1}, "t": 1}': Skip.BAD_PAYLOAD,
        b'{"topic": "a", "payload_b64": "not base64!", "t": 1}': Skip.BAD_PAYLOAD,
        b'{"topic": "a", "payload": "\\ud800", "t": 1}': Skip.BAD_PAYLOAD,
        b'{"topic": "a", "payload": "x"}': Skip.BAD_TIME,
        b'{"topic": "a", "payload": "x", "t": "2024-12-31 23:50:00"}': Skip.BAD_TIME,
        b'{"topic": "a", "payload": "x", "t": true}': Skip.BAD_TIME,
        b'{"topic": "a", "payload": "x", "t": -1}': Skip.BAD_TIME,
        b'{"topic": "a", "payload": "x", "t": 1e999}': Skip.BAD_TIME,
        b'{"topic": "a", "payload": "x", "t": ' + b"9" * 500 + b"}": Skip.BAD_TIME,
        b"[" * 50_000: Skip.NOT_JSON,
    }
    for line, reason in cases.items():
        item = parse_line(line, "f:3")
        assert isinstance(item, Skipped) and item.reason == reason, (line[:60], item)


def test_times_in_unix_seconds_or_iso_8601_with_an_offset():
    assert parse_time(T0) == parse_time(int(T0)) == parse_time(str(int(T0))) == T0
    for text in ("2024-12-31T23:50:00+08:00", "2024-12-31T15:50:00Z", "2024-12-31T15:50:00.000+00:00",
                 " 2024-12-31T10:50:00-05:00 "):
        assert parse_time(text) == T0, text
    for bad, words in (("2024-12-31T23:50:00", "no UTC offset"), ("yesterday", "neither unix seconds nor ISO"),
                       ("nan", "not a time"), (-5, "not a time"), (True, "got bool"), (None, "got NoneType"),
                       ("0001-01-01T00:00:00+00:00", "not a time")):
        with pytest.raises(ValueError, match=words):
            parse_time(bad)


def test_a_line_of_mosquitto_sub_json_output_is_a_record():
    # `mosquitto_sub -t 'city/#' -F %j` (Mosquitto 2.0), its "tst" as it prints it: Z, then the offset
    line = (b'{"tst":"2024-12-31T15:50:00.250000Z+0000","topic":"city/sensors/crowd/crowd-bund-01","qos":1,'
            b'"retain":0,"payloadlen":12,"payload":"hello \\"q\\" \xc3\xa9"}')
    assert parse_line(line, "rec:1") == FeedRecord(T0 + 0.25, "city/sensors/crowd/crowd-bund-01",
                                                   'hello "q" é'.encode(), "rec:1")


def test_long_lines_are_skipped_without_being_held_and_the_next_line_is_read():
    stream = io.BytesIO(b"\xef\xbb\xbfone\r\n" + b"x" * 100 + b"\nthree\nfour")
    assert list(read_lines(stream, max_bytes=10)) == [(1, b"one"), (2, None), (3, b"three"), (4, b"four")]


# ---------------------------------------------------------------- sources
def _write_log(directory, items) -> None:
    with RawLog(directory) as log:
        log.append_many(items)


def test_a_raw_log_gives_its_records_at_their_receive_times_and_skips_the_twins_control_records(tmp_path):
    logged = [(T0, "city/sensors/crowd/crowd-bund-01", b"[1]"), (T0 + 1, "$twin/tick", b"%.3f" % (T0 + 1)),
              (T0 + 2, "city/beidou/unit-police-04", b"$GNGGA"), (T0 + 3, "$twin/ack", b"{}")]
    _write_log(tmp_path / "state" / "rawlog", logged)
    items = list(read_feed(tmp_path / "state"))  # a state folder: its rawlog/ inside
    assert [(i.t, i.topic, i.payload) for i in items if isinstance(i, FeedRecord)] == [logged[0], logged[2]]
    assert [(i.reason, i.detail) for i in items if isinstance(i, Skipped)] == [(Skip.CONTROL, "$twin/tick"),
                                                                                 (Skip.CONTROL, "$twin/ack")]
    assert feed_sources(tmp_path / "state" / "rawlog") == [("rawlog", tmp_path / "state" / "rawlog")]
    assert last_logged_time(tmp_path / "state" / "rawlog") == T0 + 3
    assert last_logged_time(tmp_path / "nowhere") is None


def test_a_corrupt_segment_is_one_counted_problem_not_a_crash(tmp_path):
    log = tmp_path / "rawlog"
    with RawLog(log, segment_bytes=200) as raw:
        for k in range(8):
            raw.append(T0 + k, "city/sensors/crowd/crowd-bund-01", b"x" * 60)
    first = sorted(log.glob("*.seg"))[0]
    data = bytearray(first.read_bytes())
    data[20] ^= 0xFF  # a flipped byte in a closed segment
    first.write_bytes(bytes(data))
    items = list(read_raw_log(log))
    assert isinstance(items[-1], Skipped) and items[-1].reason == Skip.CORRUPT_LOG
    assert all(isinstance(i, FeedRecord) for i in items[:-1])


def test_what_a_path_is_read_as(tmp_path):
    (tmp_path / "b.jsonl").write_text("")
    (tmp_path / "a.jsonl").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert feed_sources(tmp_path) == [("jsonl", tmp_path / "a.jsonl"), ("jsonl", tmp_path / "b.jsonl")]
    assert feed_sources(tmp_path / "notes.txt") == [("jsonl", tmp_path / "notes.txt")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no raw log segments"):
        feed_sources(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        feed_sources(tmp_path / "missing")


def test_files_are_merged_by_time_and_problems_keep_their_place(tmp_path):
    a = [FeedRecord(T0 + t, "city/a", b"a", f"a:{t}") for t in (0, 2, 4)]
    b = [FeedRecord(T0 + t, "city/b", b"b", f"b:{t}") for t in (1, 2, 3)]
    bad = Skipped("b:9", Skip.NOT_JSON, "x")
    merged = list(merge_by_time([a, [b[0], bad, *b[1:]]]))
    assert [i.where for i in merged] == ["a:0", "b:1", "b:9", "a:2", "b:2", "b:3", "a:4"]
    t, items = first_time(iter([bad, *a]))
    assert t == T0 and list(items) == [bad, *a]
    assert first_time(iter([bad]))[0] is None


def test_the_twin_takes_in_only_its_own_topics():
    accepts = topic_filter("city/")
    assert [accepts(t) for t in ("city/sensors/crowd/c1", "city/beidou/u1", "city/units/u1/ack",
                                 "city/units/u1/tasks/status", "city/reports/hotline")] == [True] * 5
    assert [accepts(t) for t in ("city/alerts/x", "city/sensors/crowd", "city/twin/status", "$twin/tick",
                                 "other/sensors/crowd/c1", "city/sensors/crowd/c1/extra")] == [False] * 6


# ---------------------------------------------------------------- the clock and the pacing
def test_the_replay_clock_holds_at_its_start_until_released():
    clock = ReplayClock(100.0, start=T0)
    assert clock() == T0 and clock.wall_seconds(100.0) == 1.0
    clock.release()
    first = clock()
    assert T0 <= first < T0 + 10  # at most 0.1 s of wall at 100x before this read
    wait_until(lambda: clock() >= first + 5, 2, "the clock to run 5 twin seconds (50 ms of wall at 100x)")


def test_records_are_published_when_the_clock_reaches_their_time():
    clock = ReplayClock(200.0, start=T0 + 1)
    feed = [FeedRecord(T0 + t, topic, b"p", f"f:{i}") for i, (t, topic) in
            enumerate([(0, "city/beidou/u0"), (1, "city/beidou/u1"), (3, "city/alerts/x"), (2, "city/beidou/u2"),
                       (5, "city/beidou/u3"), (4, "city/beidou/u4")])]
    published = []
    clock.release()
    stats = Replayer(clock, lambda topic, payload: published.append((topic, clock())), accepts=topic_filter(),
                     start=T0 + 1).run(feed)
    assert [t for t, _ in published] == ["city/beidou/u1", "city/beidou/u2", "city/beidou/u3", "city/beidou/u4"]
    for (topic, at), record in zip(published, [feed[1], feed[3], feed[4], feed[5]], strict=True):
        assert at >= record.t, topic  # never before its recorded time
    assert stats.fed == 4 and stats.out_of_order == 1 and stats.finished
    assert stats.skipped == {"before_start": 1, "not_subscribed": 1} and stats.problems == []
    assert (stats.first_t, stats.last_t) == (T0 + 1, T0 + 5)


def test_a_stop_ends_the_replay_between_records_and_during_a_wait():
    stop = threading.Event()
    clock = ReplayClock(1.0, start=T0)
    clock.release()
    feed = [FeedRecord(T0, "city/beidou/u0", b"p", "f:1"), FeedRecord(T0 + 3600, "city/beidou/u1", b"p", "f:2")]
    published = []

    def publish(topic, payload):
        published.append(topic)
        threading.Timer(0.2, stop.set).start()  # Ctrl-C while the replay waits an hour for the next record

    stats = Replayer(clock, publish, accepts=topic_filter(), stop=stop).run(iter(feed))
    assert published == ["city/beidou/u0"] and stats.fed == 1 and not stats.finished
