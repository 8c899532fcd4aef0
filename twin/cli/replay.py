"""``twin replay``: recorded feeds through the real ingest and twin, on the recording's own time.

Order of things (docs/guides/replay.md): the options checked (a bad one: one line, exit 2); the feed opened
(`twin.live.replay.read_feed`: a JSONL file, a directory of them, or a twin's raw log) and read up to its first
record, whose time is the default start; the grid (``--grid``, or the Bund at 10 m built once into the cache); a
fresh state folder (``--state``, or a temporary one); the broker (embedded unless ``--broker``); the live twin on a
`ReplayClock` that holds at the start while the twin starts (kernels compiled, broker connected) and then runs
``--speed`` times faster than the wall; the records published to the broker at their recorded times on that clock
(`twin.live.replay.Replayer`), the alerts the twin raises printed as they come and progress on stderr every few
seconds; at the end of the feed, a wait until the twin has received every record published, then ``--tail`` more
twin seconds so the alerts those records raise come out; everything stopped in reverse order and the summary
printed. Ctrl-C (or SIGTERM, or ``--duration``) ends it the same way, early.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scenarios.feeds.simulator import Publisher
from scenarios.session import cached_twin, road_network
from twin.alerting.cap import LEVEL_COLOUR, cap_time, info_block
from twin.district.sources import data_dir
from twin.live.broker import broker_or_embedded
from twin.live.core import CoreConfig
from twin.live.query import LiveQuery, TickReport
from twin.live.replay import (
    FeedItem,
    ReplayClock,
    Replayer,
    ReplayStats,
    Skip,
    Skipped,
    feed_sources,
    first_time,
    parse_time,
    read_feed,
    topic_filter,
    wait_for_clock,
)
from twin.live.service import LiveService, ServiceConfig
from twin.live.snapshot import fresh_state_folder

PROGRESS_EVERY_S = 5.0
"""Wall seconds between two progress lines on stderr."""
RECEIVE_PATIENCE_S = 30.0
"""How long the end of a replay waits for the twin to receive what was published while nothing moves. [wall s]"""
DEFAULT_TAIL_S = 10.0
"""Twin seconds the twin keeps running after it received the last record (a crowd alert needs 3 s above its
threshold, `models.config.AlertTiming.for_s`, then a tick). [s]"""
MAX_ALERT_LINES = 1000
"""Alert events kept for printing; more are counted only."""


@dataclass(frozen=True)
class ReplayOptions:
    """What ``twin replay`` was asked to do (`options` checks them)."""

    source: Path
    speed: float = 1.0
    start: float | None = None
    """Twin time the replay starts at [unix s]; None: the first record's time."""
    broker: str | None = None
    protocol: str | None = None
    grid: Path | None = None
    registry: Path | None = None
    state: Path | None = None
    duration: float | None = None
    """Wall seconds; None: to the end of the feed."""
    tick_s: float = 1.0
    tail_s: float = DEFAULT_TAIL_S
    prefix: str = "city/"
    http: int | None = None


@dataclass
class AlertLine:
    """One alert event of the replayed twin, for people: kind (raised, updated, cancelled, acknowledged), the
    alert, its hazard and level, the tick time [unix s] and its CAP ``sent`` and headline."""

    kind: str
    identifier: str
    hazard: str
    level: int
    t: float
    sent: str
    headline: str


class AlertTally:
    """The alert events of the twin's ticks (a tick listener, on the twin's thread: it only counts and queues)."""

    def __init__(self, keep: int = MAX_ALERT_LINES) -> None:
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        """(hazard, kind) -> events."""
        self.lines: list[AlertLine] = []
        """The first ``keep`` events."""
        self.keep = keep
        self.printed = 0

    def on_tick(self, report: TickReport) -> None:
        """The tick listener (`twin.live.query.LiveQuery.add_tick_listener`)."""
        if not report.events:
            return
        with self.lock:
            for ev in report.events:
                self.counts[(ev.alert.hazard, ev.kind)] += 1
                if len(self.lines) < self.keep:
                    message = ev.message or {}
                    headline = info_block(message, "en-US").get("headline", "") if message.get("info") else ""
                    self.lines.append(AlertLine(ev.kind, ev.alert.identifier, ev.alert.hazard, int(ev.alert.level),
                                                float(ev.t), str(message.get("sent", "")), headline))

    def new_lines(self) -> list[AlertLine]:
        """The events not handed out before."""
        with self.lock:
            lines, self.printed = self.lines[self.printed:], len(self.lines)
        return lines

    def raised(self) -> int:
        """Alerts raised."""
        with self.lock:
            return sum(n for (_, kind), n in self.counts.items() if kind == "raised")

    def by_hazard(self) -> dict[str, Counter]:
        """hazard -> Counter of kinds."""
        out: dict[str, Counter] = {}
        with self.lock:
            for (hazard, kind), n in self.counts.items():
                out.setdefault(hazard, Counter())[kind] += n
        return out


@dataclass
class ReplayResult:
    """What a replay did: the feed's statistics, the twin's ingest counters and alerts, and how it ended."""

    source: Path
    kind: str
    start: float
    speed: float
    stats: ReplayStats = field(default_factory=ReplayStats)
    metrics: dict = field(default_factory=dict)
    tally: AlertTally = field(default_factory=AlertTally)
    active: list[str] = field(default_factory=list)
    ended_by: str = "the end of the feed"
    wall_s: float = 0.0
    state: Path | None = None
    waited_out: int = 0
    """Records published that the twin had not received when the replay gave up waiting."""
    failed: bool = False
    """The broker was lost (or never reached), or the feed could not be read on."""


# ---------------------------------------------------------------- options
def parse_start(text: str | None) -> float | None:
    """``--start`` [unix s]: ISO 8601 with a UTC offset, or unix seconds (ValueError in one line)."""
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise ValueError(f"--start: {exc}") from None


def options(args: argparse.Namespace) -> ReplayOptions:
    """`ReplayOptions` from ``twin replay`` arguments, checked: every problem in one ValueError line, a missing
    file a FileNotFoundError."""
    problems = [f"--{name} {value} must be a positive finite number" for name, value in
                (("speed", args.speed), ("duration", args.duration), ("tick", args.tick))
                if value is not None and not (value > 0 and math.isfinite(value))]
    if not (args.tail >= 0 and math.isfinite(args.tail)):
        problems.append(f"--tail {args.tail} must be a finite number >= 0")
    if args.http is not None and not 0 <= args.http <= 65535:
        problems.append(f"--http {args.http} is not a port (0-65535)")
    if args.protocol and not args.broker:
        problems.append("--protocol needs --broker (the embedded broker speaks MQTT 3.1.1)")
    if not args.prefix.endswith("/"):
        problems.append(f"--prefix {args.prefix!r} must end with /")
    if problems:
        raise ValueError("; ".join(problems))
    for label, path in (("grid", args.grid), ("registry", args.registry)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"--{label} {path} does not exist")
    if not Path(args.source).exists():
        raise FileNotFoundError(f"{args.source} does not exist")
    return ReplayOptions(source=Path(args.source), speed=args.speed, start=parse_start(args.start),
                         broker=args.broker, protocol=args.protocol, grid=args.grid, registry=args.registry,
                         state=args.state, duration=args.duration, tick_s=args.tick, tail_s=args.tail,
                         prefix=args.prefix, http=args.http)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``replay`` subcommand; its ``func`` runs it (returns the exit status)."""
    p = subparsers.add_parser(
        "replay", help="feed recorded feeds through the real ingest and twin, on their own time",
        description="Replay recorded MQTT feeds through the live twin on the recording's own time: a twin is "
                    "started (embedded broker unless --broker) on a clock that starts at --start (default: the "
                    "first record's time) and runs --speed times faster than the wall, and each recorded message "
                    "is published to the broker at its recorded time on that clock. The records are not refused "
                    "as time_skew, and the alerts come out stamped with the recording's times. Prints the alerts "
                    "as they are raised and a summary at the end; Ctrl-C stops cleanly. "
                    "docs/guides/replay.md")
    p.add_argument("source", type=Path, metavar="FILE|DIR",
                   help="a JSONL file (one {\"topic\", \"payload\" or \"payload_b64\", \"t\"} object a line; t in "
                        "unix seconds or ISO 8601 with a UTC offset), a directory of .jsonl files (merged by time), "
                        "or a twin's raw log (a folder of .seg files, or a state folder with rawlog/ inside)")
    p.add_argument("--speed", type=float, default=1.0, metavar="S",
                   help="twin seconds per wall second (default 1: as recorded; 60: an hour in a minute)")
    p.add_argument("--start", metavar="T",
                   help="twin time the replay starts at: ISO 8601 with a UTC offset (2024-12-31T23:50:00+08:00) or "
                        "unix seconds (default: the first record's time); records before it are skipped")
    p.add_argument("--broker", metavar="URL",
                   help="use this broker (mqtt[s]://user:pass@host:port) instead of starting an embedded one")
    p.add_argument("--protocol", choices=("5", "3.1.1"), help="MQTT version with --broker (default 5)")
    p.add_argument("--grid", type=Path, metavar="FILE",
                   help="twin NetCDF from 'twin grid build' (default: the Bund at 10 m, built once into "
                        "~/.cache/citytwin)")
    p.add_argument("--registry", type=Path, metavar="FILE",
                   help="device registry GeoJSON (default: data/bund/registry.geojson)")
    p.add_argument("--state", type=Path, metavar="DIR",
                   help="keep the replayed twin's state (raw log, alert database, snapshot) in this new folder "
                        "(default: a temporary folder, removed at the end)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="stop after S wall seconds of replaying, the twin's start-up not counted (default: at the "
                        "end of the feed)")
    p.add_argument("--tick", type=float, default=1.0, metavar="S",
                   help="tick period in twin seconds (default 1, as 'twin run'; at a high --speed a longer tick "
                        "costs less)")
    p.add_argument("--tail", type=float, default=DEFAULT_TAIL_S, metavar="S",
                   help=f"twin seconds the twin keeps running after it received the last record, so the alerts "
                        f"that record raises come out (default {DEFAULT_TAIL_S:g})")
    p.add_argument("--prefix", default="city/", help="the twin's MQTT topic prefix (default city/); records on "
                                                     "topics the twin does not subscribe to are skipped")
    p.add_argument("--http", type=int, metavar="PORT", help="serve the dashboard and HTTP API on 127.0.0.1:PORT "
                                                            "while replaying (0: a free port; default: none)")
    p.set_defaults(func=lambda args: run_replay(options(args)))
    return p


# ---------------------------------------------------------------- the run
def run_replay(opts: ReplayOptions) -> int:
    """Run a replay from the command line: Ctrl-C, SIGTERM and ``--duration`` end it cleanly; the summary is
    printed; 0 (1: the broker was lost or could not be reached, or the feed could not be read to its end)."""
    stop = threading.Event()
    ended: list[str] = []

    def end(reason: str) -> Callable[..., None]:
        def handler(*_: object) -> None:
            ended.append(reason)
            stop.set()
        return handler

    previous = {sig: signal.signal(sig, end("Ctrl-C" if sig == signal.SIGINT else "SIGTERM"))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    timer = threading.Timer(opts.duration, end("--duration")) if opts.duration else None
    if timer is not None:
        timer.daemon = True
    try:
        result = replay(opts, stop=stop, say=_say, on_started=timer.start if timer else None)
    finally:
        if timer is not None:
            timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if ended and result.ended_by == "stopped":
        result.ended_by = ended[0]
    print(summary(result), flush=True)
    return 1 if result.failed else 0


def _say(text: str) -> None:
    print(text, flush=True)


def replay(opts: ReplayOptions, stop: threading.Event | None = None, say: Callable[[str], None] = _say,
           on_started: Callable[[], None] | None = None) -> ReplayResult:
    """Replay ``opts.source`` (see the module docstring) until its end or ``stop``; what it did.

    Raises FileNotFoundError or ValueError (one line) for an unusable feed, grid or state folder before anything is
    started. A broker that cannot be reached, or is lost, ends the replay: ``ended_by`` says so."""
    stop = stop or threading.Event()
    kind = feed_sources(opts.source)[0][0]
    first, items = _first_record(opts.source)
    start = first if opts.start is None else opts.start
    grid = _grid(opts, say)
    registry = opts.registry or data_dir() / "bund" / "registry.geojson"
    with fresh_state_folder(opts.state, "a replay", "citytwin-replay-") as state, \
            broker_or_embedded(opts.broker, opts.protocol, say) as (url, protocol):
        result = ReplayResult(opts.source, kind, start, opts.speed, state=opts.state)
        _run(opts, items, grid, registry, state, url, protocol, result, stop, say, on_started)
    return result


def _first_record(source: Path) -> tuple[float, Iterator[FeedItem]]:
    """The first record's time and the feed's items; a ValueError in one line when there is no record."""
    try:
        first, items = first_time(read_feed(source))
    except OSError as exc:
        raise ValueError(f"cannot read {source}: {exc.strerror or exc}") from None
    if first is None:
        skipped = Counter(item.reason.value for item in items if isinstance(item, Skipped))
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "it is empty"
        raise ValueError(f"{source}: no record to replay ({reasons})")
    return first, items


def _grid(opts: ReplayOptions, say: Callable[[str], None]) -> Path:
    """``--grid``, or the Bund at 10 m built once into the cache with its road links beside it."""
    if opts.grid is not None:
        return opts.grid
    grid = cached_twin("bund", 10.0, say=say, progress=sys.stderr.isatty())
    road_network(grid, say)
    return grid


def _run(opts: ReplayOptions, items: Iterator, grid: Path, registry: Path, state: Path, url: str, protocol: str,
         result: ReplayResult, stop: threading.Event, say: Callable[[str], None],
         on_started: Callable[[], None] | None) -> None:
    """Start the twin on a replay clock, feed the records, let the twin finish, stop it; fills ``result``."""
    clock = ReplayClock(opts.speed, result.start)
    cfg = ServiceConfig(broker=url, grid=grid, registry=registry, state_dir=state, tick_s=opts.tick_s,
                        prefix=opts.prefix, protocol=protocol, client_id=f"citytwin-replay-{os.getpid()}",
                        snapshot_every_s=600.0, core=CoreConfig(prefix=opts.prefix, tick_s=opts.tick_s), clock=clock,
                        end_session_on_stop=True, freeze_heap=True)
    service = LiveService(cfg)
    query = LiveQuery(service)
    query.add_tick_listener(result.tally.on_tick)
    wall0 = time.monotonic()
    http = None
    try:
        say("starting the twin (the models' kernels compile first: about 40 s the first time after installing)")
        if not service.start():
            raise ConnectionError(f"the live twin could not connect to {url}")
        clock.release()
        wall0 = time.monotonic()
        if on_started is not None:
            on_started()
        http = _dashboard(service, opts.http, say)
        say(f"replaying {opts.source} from {_time(result.start)} at {opts.speed:g}x (Ctrl-C stops)")
        progress = Progress(clock, query, result.tally, say)
        with Publisher(url, protocol=protocol, client_id=f"twin-replay-feed-{os.getpid()}") as pub:
            Replayer(clock, pub.publish, accepts=topic_filter(opts.prefix), start=result.start, stop=stop,
                     on_problem=_problem, on_idle=lambda: progress.show(result.stats), stats=result.stats).run(items)
            if not pub.drain(RECEIVE_PATIENCE_S):
                say("warning: the broker did not confirm every record published within "
                    f"{RECEIVE_PATIENCE_S:g} s")
        if result.stats.finished:
            result.waited_out = _finish(clock, query, result, opts.tail_s, stop, progress)
        result.ended_by = "the end of the feed" if result.stats.finished and not stop.is_set() else "stopped"
    except ConnectionError as exc:  # before OSError, of which it is one
        say(f"twin replay: {exc}")
        result.ended_by, result.failed = f"the broker: {exc}", True
    except OSError as exc:  # the feed could not be read on
        say(f"twin replay: cannot read {opts.source} on: {exc}")
        result.ended_by, result.failed = f"a read error: {exc}", True
    finally:
        result.wall_s = time.monotonic() - wall0
        if http is not None:
            http.stop()
        service.stop()
        result.metrics = query.ingest_metrics()
        result.active = query.active_ids()
        for line in result.tally.new_lines():
            say(alert_text(line))


def _problem(item: Skipped) -> None:
    """A problem of the input, as it is read (stderr)."""
    print(f"twin replay: skipped {item.where}: {item.reason.value}: {item.detail}", file=sys.stderr, flush=True)


def _finish(clock: ReplayClock, query: LiveQuery, result: ReplayResult, tail_s: float, stop: threading.Event,
            progress: Progress) -> int:
    """Wait until the twin received every record fed (giving up after `RECEIVE_PATIENCE_S` without progress), then
    ``tail_s`` twin seconds; the records it had not received."""
    fed = result.stats.fed
    received = query.ingest_metrics().get("received", 0)
    last_move = time.monotonic()
    while received < fed and not stop.is_set() and time.monotonic() - last_move < RECEIVE_PATIENCE_S:
        stop.wait(0.1)
        progress.show(result.stats)
        now = query.ingest_metrics().get("received", 0)
        if now > received:
            received, last_move = now, time.monotonic()
    end = max(clock(), result.stats.last_t or clock()) + tail_s
    wait_for_clock(clock, end, stop, on_idle=lambda: progress.show(result.stats))
    return max(0, fed - received)


class Progress:
    """New alert lines (stdout) at once and a progress line (stderr) every `PROGRESS_EVERY_S` wall seconds."""

    def __init__(self, clock: ReplayClock, query: LiveQuery, tally: AlertTally, say: Callable[[str], None]) -> None:
        self.clock, self.query, self.tally, self.say = clock, query, tally, say
        self.next_line = time.monotonic() + PROGRESS_EVERY_S

    def show(self, stats: ReplayStats) -> None:
        """Called often by the replay loop: cheap when there is nothing to print."""
        for line in self.tally.new_lines():
            self.say(alert_text(line))
        if time.monotonic() < self.next_line:
            return
        self.next_line = time.monotonic() + PROGRESS_EVERY_S
        received = self.query.ingest_metrics().get("received", 0)
        print(f"replay at {_time(self.clock())}: {stats.fed} records fed, {sum(stats.skipped.values())} skipped; "
              f"twin received {received}; alerts raised {self.tally.raised()}", file=sys.stderr, flush=True)


def _dashboard(service: LiveService, port: int | None, say: Callable[[str], None]):
    """The dashboard and HTTP API on 127.0.0.1:``port`` with a new write token, or None."""
    if port is None:
        return None
    from twin.api import serve  # the web stack only when asked for

    token = secrets.token_urlsafe(16)
    try:
        handle = serve(service, host="127.0.0.1", port=port, token=token)
    except OSError as exc:
        raise ValueError(f"cannot serve HTTP on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    say(f"dashboard: {handle.url}/#token={token}  (API docs {handle.url}/docs)")
    return handle


# ---------------------------------------------------------------- output
def _time(t: float) -> str:
    return cap_time(t)


def alert_text(line: AlertLine) -> str:
    """One alert event for people: ``<sent> <kind> <hazard> <colour> <identifier>: <headline>``."""
    colour = LEVEL_COLOUR.get(line.level, f"level {line.level}")
    sent = line.sent or _time(line.t)
    return f"{sent} {line.kind} {line.hazard} {colour} {line.identifier}" + (f": {line.headline}"
                                                                          if line.headline else "")


def summary(result: ReplayResult) -> str:
    """The closing summary: the feed, the records fed and skipped (with the first problems), the twin's ingest
    counters and its alerts by hazard."""
    s, m = result.stats, result.metrics
    lines = ["== twin replay summary =="]
    span = (f"recorded {_time(s.first_t)} to {_time(s.last_t)} ({(s.last_t - s.first_t) / 60:.1f} min)"
            if s.first_t is not None else "nothing fed")
    lines.append(f"feed: {result.source} ({'raw log' if result.kind == 'rawlog' else 'JSONL'}), {span}, replayed "
                 f"from {_time(result.start)} in {result.wall_s:.0f} s wall at {result.speed:g}x; "
                 f"ended by {result.ended_by}")
    lines += _feed_lines(s)
    rejected = {k: v for k, v in (m.get("rejected") or {}).items() if v}
    lines.append(f"twin: received {m.get('received', 0)}, accepted {m.get('accepted', 0)}, duplicates "
                 f"{m.get('duplicates', 0)}, rejected {sum(rejected.values())} ("
                 + (", ".join(f"{k} {v}" for k, v in sorted(rejected.items())) or "none") + ")")
    if result.waited_out:
        lines.append(f"warning: {result.waited_out} records fed were not received by the twin before the end")
    by_hazard = result.tally.by_hazard()
    for hazard, c in sorted(by_hazard.items()):
        lines.append(f"alerts {hazard}: raised {c['raised']}, updated {c['updated']}, cancelled {c['cancelled']}")
    if not by_hazard:
        lines.append("alerts: none")
    lines.append(f"alerts still active: {len(result.active)}")
    if result.state is not None:
        lines.append(f"state kept in {result.state} (raw log, alert database, snapshot)")
    return "\n".join(lines)


def _feed_lines(s: ReplayStats) -> list[str]:
    problems = {k: v for k, v in s.skipped.items() if Skip(k).is_problem}
    by_design = {k: v for k, v in s.skipped.items() if not Skip(k).is_problem}

    def text(counts: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"

    lines = [f"records: {s.fed} fed, {sum(s.skipped.values())} skipped (problems {sum(problems.values())}: "
             f"{text(problems)}; by design {sum(by_design.values())}: {text(by_design)}), "
             f"{s.out_of_order} out of order"]
    lines += [f"  {p.where}: {p.reason.value}: {p.detail}" for p in s.problems]
    if sum(problems.values()) > len(s.problems):
        lines.append(f"  ... and {sum(problems.values()) - len(s.problems)} more problems")
    return lines
