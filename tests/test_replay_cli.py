"""``twin replay`` and ``twin run --clock`` as a user runs them (in process, through ``twin.cli.main.main``): a recorded
evening from a past date replayed through the embedded broker raises its crowd alert at the recorded time, the same
feed on the wall clock is refused as time_skew, the replayed twin's raw log replays in turn, and bad options end
with one line and exit status 2.

The recorded feed is tests/data/replay/bund-nye-2024 (tests/data/replay/make_sample.py says what is in it)."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import io
import os
import signal
import threading
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from ingest.rawlog import RawLog, read_log
from tests.data.replay import make_sample
from tests.ingest.conftest import own_broker  # noqa: F401 - the fixture: a private Mosquitto per test
from tests.support.waits import wait_until
from twin.alerting.cap import info_block
from twin.alerting.store import Store
from twin.cli.replay import add_parser
from twin.cli.run import add_clock_options, service_config, twin_clock
from twin.live.replay import FeedRecord, ReplayClock, Skip, Skipped, read_feed, topic_filter
from twin.live.service import SNAPSHOT, LiveService, TwinClock

cli = importlib.import_module("twin.cli.main")  # the module (twin.cli.main is also the name of its function)
SAMPLE = Path(__file__).parent / "data" / "replay" / "bund-nye-2024"
SPEED = "30"
"""Twin seconds per wall second of the replays here: the 90 s recording in 3 s."""


def _records(path: Path) -> list[FeedRecord]:
    return [i for i in read_feed(path) if isinstance(i, FeedRecord)]


def _build_parser() -> argparse.ArgumentParser:
    """The ``twin`` parser with ``twin replay`` and ``twin run --clock`` wired in as twin/cli/main.py wires them
    (nothing is added once main.py does it)."""
    parser = BUILD_PARSER()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "replay" not in sub.choices:
        cli._guard(add_parser(sub))
    if "--clock" not in sub.choices["run"]._option_string_actions:
        add_clock_options(sub.choices["run"])
    return parser


BUILD_PARSER = cli.build_parser


def run_twin(*args: object) -> tuple[int, str, str]:
    """``twin ARGS`` in process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(out), redirect_stderr(err):
        patch.setattr(cli, "build_parser", _build_parser)
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def replayed(bund_file, tmp_path_factory) -> tuple[int, str, str, Path]:
    """The recorded evening replayed once into a state folder that is kept: (status, stdout, stderr, state)."""
    state = tmp_path_factory.mktemp("replayed") / "state"
    return (*run_twin("replay", SAMPLE, "--speed", SPEED, "--grid", bund_file, "--state", state), state)


def _one_line_error(code: int, err: str, words: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err
    assert lines[-1].startswith(("twin: error:", "twin replay: error:", "twin run: error:")), err
    assert words in lines[-1], err


# ---------------------------------------------------------------- bad options
def test_bad_replay_options_end_with_one_line_and_exit_2(tmp_path):
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json\n[1]\n")
    (tmp_path / "empty").mkdir()
    held = tmp_path / "held"
    RawLog(held / "rawlog").close()
    cases = [
        ((SAMPLE, "--speed", "0"), "--speed 0.0 must be a positive finite number"),
        ((SAMPLE, "--speed", "nan"), "--speed nan must be a positive finite number"),
        ((SAMPLE, "--speed", "fast"), "invalid float value"),
        ((SAMPLE, "--tail", "-1"), "--tail -1.0 must be"),
        ((SAMPLE, "--start", "2024-12-31T23:50:00"), "has no UTC offset"),
        ((SAMPLE, "--start", "tomorrow"), "--start: 'tomorrow' is neither unix seconds nor ISO 8601"),
        ((SAMPLE, "--protocol", "5"), "--protocol needs --broker"),
        ((SAMPLE, "--http", "70000"), "not a port"),
        ((tmp_path / "missing.jsonl",), "does not exist"),
        ((tmp_path / "empty",), "no raw log segments"),
        ((junk,), "no record to replay (not_json 1, not_object 1)"),
        ((SAMPLE, "--grid", junk, "--state", held), "already holds a twin"),
        ((), "the following arguments are required: FILE|DIR"),
    ]
    for args, words in cases:
        code, _, err = run_twin("replay", *args)
        _one_line_error(code, err, words)
        if words != cases[-1][1] and "invalid float" not in words:  # argparse prints its usage line first
            assert len(err.strip().splitlines()) == 1, err


def test_bad_clock_options_of_twin_run_end_with_one_line_and_exit_2(tmp_path):
    state = tmp_path / "state"
    with RawLog(state / "rawlog") as log:  # a twin that has run to 2025-01-01
        log.append(make_sample.T0 + 86_400, "$twin/tick", b"0")
    cases = [
        (("--start", "2024-12-31T23:50:00+08:00"), "--start needs --clock replay"),
        (("--speed", "10"), "--speed needs --clock replay"),
        (("--clock", "wall", "--start", "0", "--speed", "2"), "--start and --speed need --clock replay"),
        (("--clock", "replay",), "--clock replay needs --start T"),
        (("--clock", "replay", "--start", "2024-12-31"), "has no UTC offset"),
        (("--clock", "replay", "--start", "0", "--speed", "-1"), "--speed must be a positive finite number"),
        (("--clock", "replay", "--start", "2024-12-31T23:50:00+08:00"), "its time cannot go back"),
        (("--clock", "sundial"), "invalid choice: 'sundial'"),
    ]
    for args, words in cases:
        code, _, err = run_twin("run", "--state", state, *args)
        _one_line_error(code, err, words)


def test_the_clock_of_twin_run(tmp_path):
    parser = argparse.ArgumentParser(prog="twin run")
    add_clock_options(parser)
    wall = twin_clock(parser.parse_args([]))
    assert type(wall) is TwinClock and wall.speed == 1.0
    replay = twin_clock(parser.parse_args(["--clock", "replay", "--start", "2024-12-31T15:50:00Z", "--speed", "60"]))
    assert isinstance(replay, ReplayClock) and replay() == make_sample.T0 and replay.speed == 60.0
    grid = tmp_path / "grid.nc"
    grid.write_bytes(b"")  # only checked to exist here
    args = _build_parser().parse_args(["run", "--grid", str(grid), "--state", str(tmp_path), "--clock", "replay",
                                       "--start", str(make_sample.T0)])
    clock = service_config(args).clock
    assert isinstance(clock, ReplayClock) and clock() == make_sample.T0 and clock.speed == 1.0
    args = BUILD_PARSER().parse_args(["run", "--grid", str(grid), "--state", str(tmp_path)])  # main.py not wired
    assert type(service_config(args).clock) is TwinClock


# ---------------------------------------------------------------- replays
@pytest.mark.slow
def test_a_recorded_evening_raises_its_crowd_alert_at_the_recorded_time(replayed):
    code, out, err, state = replayed
    assert code == 0, err
    records = _records(SAMPLE)
    lines = sum(len((SAMPLE / f).read_text().splitlines()) for f in ("counters.jsonl", "units.jsonl"))
    fed = lines - len(make_sample.BAD_LINES)
    assert len(records) == fed + 1  # the twin's own alert in the recording is a record, not fed
    assert "ended by the end of the feed" in out
    assert f"records: {fed} fed, 3 skipped (problems 2: bad_time 1, not_json 1; by design 1: not_subscribed 1)" \
        in out, out
    for number, reason in make_sample.BAD_LINES.items():
        where = f"counters.jsonl:{number}: {reason}"
        assert (where in err) == Skip(reason).is_problem, err  # problems are told as they are read
    assert f"twin: received {fed}, accepted {fed}, duplicates 0, rejected 0 (none)" in out, out
    # the crowd alerts, from the twin's alert store: sent (and onset) at the recorded time, not now. The square's
    # crowd also spills onto the promenade beside it (one alert per place, issue 16)
    store = Store.open(f"sqlite:///{state / 'alerts.db'}")
    try:
        firsts = [store.messages(a["identifier"])[0] for a in store.alerts() if a["hazard"] == "crowd"]
    finally:
        store.close()
    assert any("Chen Yi Square" in info_block(m)["headline"] for m in firsts), firsts
    jump = make_sample.JUMP_T  # the first crowded count; an alert needs 3 s above its threshold, then a tick
    for first in firsts:
        sent = dt.datetime.fromisoformat(first["sent"]).timestamp()
        assert first["msgType"] == "Alert" and info_block(first)["onset"] == first["sent"]
        assert jump + 3 <= sent <= jump + 20, (first["sent"], make_sample.iso(jump))
        assert f"{first['sent']} raised crowd" in out, out
    assert f"alerts crowd: raised {len(firsts)}, updated 0, cancelled 0" in out, out


@pytest.mark.slow
def test_the_replayed_twins_raw_log_replays_the_same_messages_at_their_times(replayed, bund_file):
    code, _, err, state = replayed
    assert code == 0, err
    recorded = [r for r in _records(SAMPLE) if topic_filter()(r.topic)]
    items = list(read_feed(state))  # the state folder: its rawlog/ inside
    logged = [i for i in items if isinstance(i, FeedRecord)]
    assert Counter((r.topic, r.payload) for r in logged) == Counter((r.topic, r.payload) for r in recorded)
    when = {(r.topic, r.payload): r.t for r in recorded}
    lags = [r.t - when[(r.topic, r.payload)] for r in logged]
    assert min(lags) >= 0 and max(lags) < 5, (min(lags), max(lags))  # received on the replay clock, in twin s
    ticks = [i for i in items if isinstance(i, Skipped)]
    assert ticks and {i.reason for i in ticks} == {Skip.CONTROL}
    code, out, err = run_twin("replay", state, "--speed", "90", "--grid", bund_file, "--tail", "0")
    assert code == 0, err
    assert f"records: {len(recorded)} fed, {len(ticks)} skipped (problems 0: none; by design {len(ticks)}: " \
           f"control {len(ticks)})" in out, out
    assert "(raw log)" in out and f"twin: received {len(recorded)}, accepted {len(recorded)}," in out, out


@pytest.mark.slow
def test_the_same_feed_on_the_wall_clock_is_refused_as_time_skew(bund_file, tmp_path, own_broker):  # noqa: F811
    from scenarios.feeds.simulator import Publisher
    from twin.live.query import LiveQuery
    from twin.live.replay import Replayer

    args = _build_parser().parse_args(["run", "--clock", "wall", "--grid", str(bund_file), "--state",
                                       str(tmp_path / "state"), "--broker", own_broker.url, "--client-id", "twin-wall"])
    service = LiveService(service_config(args))
    assert type(service.clock) is TwinClock
    query = LiveQuery(service)
    try:
        assert service.start(10)
        fast = ReplayClock(1e6, make_sample.T0)  # the feed's pace does not matter here: at once
        fast.release()
        with Publisher(own_broker.url, client_id="wall-feed") as pub:
            stats = Replayer(fast, pub.publish, accepts=topic_filter()).run(read_feed(SAMPLE))
            assert pub.drain(10)
        wait_until(lambda: query.ingest_metrics()["received"] >= stats.fed, 20, "the twin to receive the feed")
        m = query.ingest_metrics()
        assert stats.fed > 100 and m["rejected"]["time_skew"] == stats.fed and m["accepted"] == 0, m
    finally:
        service.stop()


@pytest.mark.slow
def test_twin_run_on_a_replay_clock_ticks_from_its_start(bund_file, tmp_path, own_broker):  # noqa: F811
    state = tmp_path / "state"
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:  # twin run sets its own handlers for good: it owns its process, not this one
        code, out, err = run_twin("run", "--clock", "replay", "--start", "2024-12-31T23:50:00+08:00", "--speed", "10",
                                  "--duration", "2", "--grid", bund_file, "--state", state, "--broker",
                                  own_broker.url, "--client-id", "twin-replay-clock")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert code == 0, err
    assert "replay clock from 2024-12-31T23:50:00+08:00 at 10x" in out, out
    ticks = [float(r.payload) for r in read_log(state / "rawlog") if r.topic == "$twin/tick"]
    t0 = make_sample.T0
    assert ticks and t0 < min(ticks) and max(ticks) < t0 + 10 * 2 + 15, (t0, ticks)  # 2 wall s at 10x, from T0


@pytest.mark.slow
def test_ctrl_c_stops_a_replay_cleanly_with_its_summary(bund_file, tmp_path):
    state = tmp_path / "state"

    def interrupt_once_feeding() -> None:
        wait_until(lambda: any((state / "rawlog").glob("*.seg")) and any(
            isinstance(i, FeedRecord) for i in read_feed(state / "rawlog")), 60, "the replay to feed a record")
        os.kill(os.getpid(), signal.SIGINT)

    feeder = threading.Thread(target=interrupt_once_feeding, daemon=True)
    feeder.start()
    code, out, err = run_twin("replay", SAMPLE, "--speed", "1", "--grid", bund_file, "--state", state)
    feeder.join(5)
    assert code == 0, err
    assert "ended by Ctrl-C" in out and "== twin replay summary ==" in out, out
    fed = int(out.split("records: ")[1].split(" fed")[0])
    assert 0 < fed < len(_records(SAMPLE)) - 1
    assert (state / SNAPSHOT).is_file()  # written at the clean stop
