"""Recorded feeds read, checked and paced for a replay through the live twin (``twin replay``; docs/guides/replay.md).

A recorded feed is a sequence of MQTT messages with the time each was sent or received. Three inputs:

- **JSONL**: one JSON object a line, ``{"topic": str, "payload": str, "t": T}`` with the payload as UTF-8 text, or
  ``"payload_b64": str`` (standard base64) instead of ``"payload"`` for bytes. ``T`` is unix seconds (a number) or
  ISO 8601 with a UTC offset (``2024-12-31T23:50:00+08:00``, ``...Z``). A line of ``mosquitto_sub -F %j`` is one
  too: its time is ``tst`` (read when there is no ``t``). Other keys are ignored. Lines are checked
  one by one (`parse_line`): a bad line is a `Skipped` item with its line number, a reason (`Skip`) and a detail,
  never an exception.
- **A raw log** written by the twin (`ingest.rawlog`): a directory of ``*.seg`` files, or a twin's state folder
  with one in ``rawlog/``. Each record carries the topic, the payload and the receive time, which is its time here.
  The twin's own control records (``$twin/tick``, ``$twin/ack``, ``$twin/case``) are skipped (`Skip.CONTROL`): the
  replaying twin makes its own ticks, and operators' actions are not MQTT messages.
- **A directory of JSONL files** (``*.jsonl``): merged by time (`merge_by_time`).

Each source is streamed (constant memory whatever its length), so each file should be in time order; a record
earlier than the one before it is still fed, at once, and counted as out of order (`ReplayStats.out_of_order`).

`Replayer` publishes each record when the twin's clock (a `ReplayClock`) reaches its recorded time: the clock
starts at the replay's start time and runs ``speed`` times faster than the wall, so the twin receives the
recording on the recording's own time and the ingest's time-skew check (`ingest.validation.check_time`) accepts
it. Records before the start are skipped (`Skip.BEFORE_START`), and so are records on topics the twin does not
subscribe to (`Skip.NOT_SUBSCRIBED`: its own alerts in a recording of everything, for example).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import heapq
import itertools
import json
import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, NamedTuple

from ingest.rawlog import CorruptLogError, LogPosition, read_log
from ingest.routing import subscriptions
from twin.alerting.cap import cap_time
from twin.live.service import TwinClock

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 4 * 1024 * 1024
"""Longest JSONL line read [byte]: longer ones are skipped (`Skip.TOO_LONG`) without being held in memory. The
ingest refuses payloads above 64 KiB anyway (`ingest.validation.Limits.max_bytes`)."""
MAX_TOPIC_BYTES = 65_535
"""Longest MQTT topic name [byte] (MQTT 5, 1.5.4)."""
MAX_T = 253_402_300_799.0
"""The last second of 9999-12-31 UTC [unix s]: later times cannot be written as ISO 8601."""
SEGMENT_SUFFIX = ".seg"
FEED_SUFFIX = ".jsonl"


class Skip(StrEnum):
    """Why an item of a feed was not published. The first eight are problems of the input (each is reported with
    where it was); the others are skipped by design (counted only)."""

    TOO_LONG = "too_long"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    BAD_TOPIC = "bad_topic"
    BAD_PAYLOAD = "bad_payload"
    BAD_TIME = "bad_time"
    CORRUPT_LOG = "corrupt_log"
    BLANK = "blank"
    CONTROL = "control"
    NOT_SUBSCRIBED = "not_subscribed"
    BEFORE_START = "before_start"

    @property
    def is_problem(self) -> bool:
        """True for a problem of the input (reported with where it was), False for a skip by design."""
        return self not in (Skip.BLANK, Skip.CONTROL, Skip.NOT_SUBSCRIBED, Skip.BEFORE_START)


class FeedRecord(NamedTuple):
    """One recorded message: its time [unix s], topic, payload, and where it was read (``file:line``)."""

    t: float
    topic: str
    payload: bytes
    where: str


class Skipped(NamedTuple):
    """An item of a feed that is not published: where it was (``file:line``), why, and a one-line detail."""

    where: str
    reason: Skip
    detail: str


FeedItem = FeedRecord | Skipped


# ---------------------------------------------------------------- times
def parse_time(value: object) -> float:
    """A time as unix seconds: a number (not a boolean), a string of one, or ISO 8601 text with a UTC offset.

    Returns [unix s], finite, from 1970 to 9999. Raises ValueError saying what is wrong (a time without an offset
    is refused: the recording's time zone cannot be guessed)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected unix seconds or ISO 8601 text, got {type(value).__name__}")
    if isinstance(value, str):
        return _time_of_text(value.strip())
    if isinstance(value, int) and not 0 <= value <= MAX_T:  # before float(): a huge int would overflow
        shown = str(value) if abs(value) < 10**20 else "a number of more than 20 digits"
        raise ValueError(f"{shown} is not a time from 1970 to 9999 in unix seconds")
    return _in_range(float(value))


def _time_of_text(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        return _in_range(seconds)
    try:
        when = dt.datetime.fromisoformat(_MOSQUITTO_ZONE.sub(r"\1", text))
    except ValueError:
        raise ValueError(f"{text[:60]!r} is neither unix seconds nor ISO 8601 (2024-12-31T23:50:00+08:00)") from None
    if when.tzinfo is None:
        raise ValueError(f"{text[:60]!r} has no UTC offset: add one (+08:00 for Shanghai, Z for UTC)")
    return _in_range(when.timestamp())


_MOSQUITTO_ZONE = re.compile(r"Z([+-]\d{2}:?\d{2})$")
"""The zone of ``mosquitto_sub -F %j``'s ``tst`` (``2024-12-31T15:50:00.000000Z+0000``): the offset after the Z."""


def _in_range(t: float) -> float:
    if not (math.isfinite(t) and 0.0 <= t <= MAX_T):
        raise ValueError(f"not a time from 1970 to 9999: {t!r} unix seconds")
    return t


def iso_time(t: float) -> str:
    """``t`` [unix s] as ISO 8601 in Shanghai time, whole seconds, as in the twin's CAP messages (for people)."""
    return cap_time(t)


# ---------------------------------------------------------------- JSONL lines
def encode_line(record: FeedRecord) -> bytes:
    """One JSONL line (without its line break) for a record, the inverse of `parse_line`: the payload as text when it
    is UTF-8, else base64 in ``payload_b64``; ``t`` in unix seconds."""
    doc: dict[str, object] = {"topic": record.topic, "t": record.t}
    try:
        doc["payload"] = record.payload.decode("utf-8")
    except UnicodeDecodeError:
        doc["payload_b64"] = base64.b64encode(record.payload).decode("ascii")
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse_line(line: bytes, where: str) -> FeedItem:
    """One JSONL line (without its line break) as a `FeedRecord`, or `Skipped` with the reason. Never raises."""
    if not line.strip():
        return Skipped(where, Skip.BLANK, "empty line")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Skipped(where, Skip.NOT_UTF8, f"not UTF-8 at byte {exc.start}")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; deep nesting a RecursionError
        return Skipped(where, Skip.NOT_JSON, f"not JSON: {str(exc)[:80]}")
    if not isinstance(doc, dict):
        return Skipped(where, Skip.NOT_OBJECT, f"a JSON {type(doc).__name__}, not an object")
    return _record_of(doc, where)


def _record_of(doc: dict, where: str) -> FeedItem:
    topic, problem = _checked_topic(doc.get("topic"))
    if problem:
        return Skipped(where, Skip.BAD_TOPIC, problem)
    payload, problem = _payload_of(doc)
    if problem:
        return Skipped(where, Skip.BAD_PAYLOAD, problem)
    key = "t" if "t" in doc else "tst"
    if key not in doc:
        return Skipped(where, Skip.BAD_TIME, 'no "t"')
    try:
        t = parse_time(doc[key])
    except ValueError as exc:
        return Skipped(where, Skip.BAD_TIME, f'"{key}": {exc}')
    return FeedRecord(t, topic, payload, where)


def _checked_topic(topic: object) -> tuple[str, str]:
    """(topic, "") or ("", the problem): a non-empty MQTT topic name, no wildcards, no NUL, at most 65535 bytes."""
    if not isinstance(topic, str) or not topic:
        return "", 'no "topic" string'
    if any(c in topic for c in "+#\x00"):
        return "", f"topic {topic[:60]!r} has a wildcard or NUL"
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        return "", f"topic {topic[:60]!r} is not valid Unicode"
    if size > MAX_TOPIC_BYTES:
        return "", f"topic of {size} bytes, more than MQTT's {MAX_TOPIC_BYTES}"
    return topic, ""


def _payload_of(doc: dict) -> tuple[bytes, str]:
    """(payload, "") or (b"", the problem) from ``payload`` (UTF-8 text) or ``payload_b64`` (base64)."""
    text, b64 = doc.get("payload"), doc.get("payload_b64")
    if (text is None) == (b64 is None):
        return b"", 'needs one of "payload" (text) and "payload_b64"'
    if text is not None:
        if not isinstance(text, str):
            return b"", f'"payload" is a JSON {type(text).__name__}: give the payload as text, or "payload_b64"'
        try:
            return text.encode("utf-8"), ""
        except UnicodeEncodeError:
            return b"", '"payload" is not valid Unicode: use "payload_b64"'
    if not isinstance(b64, str):
        return b"", '"payload_b64" is not a string'
    try:
        return base64.b64decode(b64, validate=True), ""
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text
        return b"", f'"payload_b64" is not base64: {exc}'


def read_lines(stream: BinaryIO, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """(line number from 1, line without its break) of a binary stream; None for a line longer than ``max_bytes``,
    which is skipped without being held in memory. A UTF-8 byte order mark on the first line is dropped."""
    for number in itertools.count(1):
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # the rest of the long line, a bounded piece at a time
                line = stream.readline(max_bytes)
            yield number, None
            continue
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        yield number, line.rstrip(b"\r\n")


def read_jsonl(path: Path, max_bytes: int = MAX_LINE_BYTES) -> Iterator[FeedItem]:
    """The items of a JSONL file, in file order (`parse_line`)."""
    with open(path, "rb") as stream:
        for number, line in read_lines(stream, max_bytes):
            where = f"{path.name}:{number}"
            if line is None:
                yield Skipped(where, Skip.TOO_LONG, f"line longer than {max_bytes} bytes")
            else:
                yield parse_line(line, where)


# ---------------------------------------------------------------- raw logs
def read_raw_log(directory: Path) -> Iterator[FeedItem]:
    """The items of a twin's raw log (`ingest.rawlog.read_log`), in log order, each at its receive time; the
    twin's control records are `Skip.CONTROL`. A corrupt segment ends the log with one `Skip.CORRUPT_LOG` item."""
    try:
        for rec in read_log(directory):
            where = f"{directory.name} segment {rec.position.segment} offset {rec.position.offset}"
            if rec.topic.startswith("$"):
                yield Skipped(where, Skip.CONTROL, rec.topic)
                continue
            topic, problem = _checked_topic(rec.topic)
            if problem:
                yield Skipped(where, Skip.BAD_TOPIC, problem)
                continue
            try:
                t = _in_range(rec.received_at)
            except ValueError as exc:
                yield Skipped(where, Skip.BAD_TIME, f"receive time: {exc}")
                continue
            yield FeedRecord(t, topic, rec.payload, where)
    except CorruptLogError as exc:
        yield Skipped(directory.name, Skip.CORRUPT_LOG, f"{exc}: the rest of the log is not read")


def last_logged_time(directory: Path) -> float | None:
    """The latest receive time [unix s] in the last segment of a raw log that holds a record (None: no log, or an
    empty one): how far the twin that wrote it has run. Reads one segment (or a few, when the last are empty)."""
    directory = Path(directory)
    segments = sorted(int(p.stem) for p in directory.glob(f"*{SEGMENT_SUFFIX}") if p.stem.isdigit())
    for segment in reversed(segments):
        try:
            times = [rec.received_at for rec in read_log(directory, LogPosition(segment, 0))
                     if rec.position.segment == segment and math.isfinite(rec.received_at)]
        except (CorruptLogError, OSError):
            continue
        if times:
            return max(times)
    return None


# ---------------------------------------------------------------- sources
def feed_sources(path: Path) -> list[tuple[str, Path]]:
    """What to read at ``path``: [("jsonl", file), ...] or [("rawlog", directory)].

    A file is JSONL; a directory with ``*.seg`` files is a raw log, and so is a state folder with one in
    ``rawlog/``; otherwise a directory's ``*.jsonl`` files. Raises FileNotFoundError or ValueError (one line)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_file():
        return [("jsonl", path)]
    for directory in (path, path / "rawlog"):
        if directory.is_dir() and any(directory.glob(f"*{SEGMENT_SUFFIX}")):
            return [("rawlog", directory)]
    files = sorted(p for p in path.glob(f"*{FEED_SUFFIX}") if p.is_file())
    if not files:
        raise ValueError(f"{path}: no raw log segments (*{SEGMENT_SUFFIX}) and no *{FEED_SUFFIX} files in it")
    return [("jsonl", p) for p in files]


def read_feed(path: Path, max_bytes: int = MAX_LINE_BYTES) -> Iterator[FeedItem]:
    """Every item at ``path`` (`feed_sources`), the sources merged by time (`merge_by_time`)."""
    readers = [read_raw_log(p) if kind == "rawlog" else read_jsonl(p, max_bytes) for kind, p in feed_sources(path)]
    return readers[0] if len(readers) == 1 else merge_by_time(readers)


def merge_by_time(sources: Iterable[Iterable[FeedItem]]) -> Iterator[FeedItem]:
    """Items of several sources in time order (ties in source order), each source read lazily. A skipped item
    keeps its place after the record before it in its own source."""
    def keyed(index: int, items: Iterable[FeedItem]) -> Iterator[tuple[float, int, FeedItem]]:
        last = -math.inf
        for item in items:
            if isinstance(item, FeedRecord):
                last = item.t
            yield last, index, item

    merged = heapq.merge(*(keyed(i, s) for i, s in enumerate(sources)), key=lambda k: (k[0], k[1]))
    return (item for _, _, item in merged)


def first_time(items: Iterable[FeedItem]) -> tuple[float | None, Iterator[FeedItem]]:
    """(time of the first record, the same items from the start): reads up to the first record (None: there is
    none) and gives back an iterator that yields what was read first."""
    it = iter(items)
    head: list[FeedItem] = []
    for item in it:
        head.append(item)
        if isinstance(item, FeedRecord):
            return item.t, itertools.chain(head, it)
    return None, iter(head)


def topic_filter(prefix: str = "city/") -> Callable[[str], bool]:
    """Whether the twin with topic ``prefix`` subscribes to a topic (`ingest.routing.subscriptions`)."""
    filters = [f.split("/") for f in subscriptions(prefix)]

    def matches(topic: str) -> bool:
        parts = topic.split("/")
        return any(_matches(f, parts) for f in filters)

    return matches


def _matches(levels: list[str], parts: list[str]) -> bool:
    """MQTT topic filter matching (``+`` one level, ``#`` the rest) of a split filter and a split topic."""
    for i, level in enumerate(levels):
        if level == "#":
            return True
        if i >= len(parts) or level not in ("+", parts[i]):
            return False
    return len(parts) == len(levels)


# ---------------------------------------------------------------- the clock and the pacing
class ReplayClock(TwinClock):
    """A `TwinClock` that stays at ``start`` until `release`, then runs ``speed`` times faster than the wall.

    The twin is made and started (kernels compiled, broker connected) while its clock holds, so the start-up takes
    no twin time: when released, the twin's time is exactly ``start`` and the replay's first record is on time."""

    def __init__(self, speed: float, start: float) -> None:
        super().__init__(speed, start)
        self.released = False

    def __call__(self) -> float:
        return super().__call__() if self.released else self.sim0

    def release(self) -> None:
        """Let the clock run from ``start`` (now, on the wall)."""
        self.wall0 = time.time()
        self.released = True


MAX_REPORTED = 20
"""Problems of the input kept with where they were (`ReplayStats.problems`); all are counted."""


@dataclass
class ReplayStats:
    """What a replay did. Times [unix s] are recorded times."""

    fed: int = 0
    """Records published to the broker."""
    skipped: Counter = field(default_factory=Counter)
    """Items not published, by `Skip` reason."""
    problems: list[Skipped] = field(default_factory=list)
    """The first `MAX_REPORTED` problems of the input, with where they were."""
    out_of_order: int = 0
    """Records earlier than the record before them (fed at once)."""
    first_t: float | None = None
    last_t: float | None = None
    """Times of the first and the last record fed."""
    finished: bool = False
    """The whole feed was read (False: stopped before its end)."""

    def count(self, item: Skipped) -> None:
        """Count a skipped item (and keep it, if it is one of the first problems)."""
        self.skipped[item.reason.value] += 1
        if item.reason.is_problem and len(self.problems) < MAX_REPORTED:
            self.problems.append(item)

    @property
    def problem_count(self) -> int:
        """Items skipped for a problem of the input."""
        return sum(n for reason, n in self.skipped.items() if Skip(reason).is_problem)


class Replayer:
    """Publishes a feed's records when the clock reaches their recorded times (see the module docstring).

    ``publish(topic, payload)`` sends one message (it may raise ConnectionError, which ends the replay);
    ``accepts(topic)`` says whether the twin takes the topic in (`topic_filter`); ``start`` [unix s] skips the
    records before it; ``stop`` ends the replay between two records or during a wait; ``on_problem`` hears of each
    problem of the input as it is read, ``on_idle`` is called at least every ``wait_chunk_s`` [wall s] while the
    replay waits and after every ``idle_every`` records fed (progress lines, new alerts); ``stats`` (default: new ones)
    are counted into as the replay goes, so a caller holding them sees how far a replay that raised got."""

    def __init__(self, clock: TwinClock, publish: Callable[[str, bytes], object], *, accepts: Callable[[str], bool],
                 start: float = -math.inf, stop: threading.Event | None = None,
                 on_problem: Callable[[Skipped], None] | None = None, on_idle: Callable[[], None] | None = None,
                 wait_chunk_s: float = 0.5, idle_every: int = 1000, stats: ReplayStats | None = None) -> None:
        self.clock, self.publish, self.accepts, self.start = clock, publish, accepts, start
        self.stop = stop or threading.Event()
        self.on_problem, self.on_idle = on_problem, on_idle
        self.wait_chunk_s, self.idle_every = wait_chunk_s, idle_every
        self.stats = stats if stats is not None else ReplayStats()

    def run(self, items: Iterable[FeedItem]) -> ReplayStats:
        """Feed ``items`` (until their end or `stop`); the statistics, also in ``self.stats``."""
        for item in items:
            if self.stop.is_set():
                return self.stats
            if isinstance(item, Skipped):
                self._skip(item)
            elif item.t < self.start:
                self._skip(Skipped(item.where, Skip.BEFORE_START, iso_time(item.t)))
            elif not self.accepts(item.topic):
                self._skip(Skipped(item.where, Skip.NOT_SUBSCRIBED, item.topic[:120]))
            elif self._wait_for(item.t):
                self._feed(item)
        self.stats.finished = not self.stop.is_set()
        return self.stats

    def _skip(self, item: Skipped) -> None:
        self.stats.count(item)
        if item.reason.is_problem and self.on_problem is not None:
            self.on_problem(item)

    def _feed(self, record: FeedRecord) -> None:
        s = self.stats
        if s.last_t is not None and record.t < s.last_t:
            s.out_of_order += 1
        self.publish(record.topic, record.payload)
        s.fed += 1
        s.first_t = record.t if s.first_t is None else s.first_t
        s.last_t = record.t if s.last_t is None else max(s.last_t, record.t)
        if s.fed % self.idle_every == 0 and self.on_idle is not None:
            self.on_idle()

    def _wait_for(self, t: float) -> bool:
        """Wait until the clock reads ``t`` [unix s]; False if stopped first."""
        return wait_for_clock(self.clock, t, self.stop, self.wait_chunk_s, self.on_idle)


def wait_for_clock(clock: TwinClock, t: float, stop: threading.Event, chunk_s: float = 0.5,
                   on_idle: Callable[[], None] | None = None) -> bool:
    """Wait until ``clock`` reads ``t`` [unix s], in waits of at most ``chunk_s`` wall seconds (``on_idle`` after
    each); False if ``stop`` was set first."""
    while True:
        ahead = t - clock()
        if ahead <= 0:
            return True
        if stop.wait(min(chunk_s, clock.wall_seconds(ahead))):
            return False
        if on_idle is not None:
            on_idle()
