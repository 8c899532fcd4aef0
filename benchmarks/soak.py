"""Soak: the live twin under mixed traffic for a long time, with a broker restart and a SIGKILL.

On a private Mosquitto with deploy/mosquitto.conf, the twin runs in its own process on the Bund at
10 m (1 s tick, snapshots every 10 s). The run:

1. measures the twin's capacity: single-record QoS 1 messages preloaded while it is stopped, then
   drained (messages/s);
2. publishes mixed traffic at ``--load`` (default 80 %) of that capacity for ``--minutes`` (default
   30): crowd counts whose level cycles through red every five minutes (so alerts are raised and
   cleared all along), and a share ``--bad`` (default 5 %) of bad messages (unknown devices, broken
   JSON) that must be dead-lettered;
3. restarts the broker (3 s down) at one third of the run and SIGKILLs the twin at two thirds,
   starting it again at once;
4. stops the feed, lets the twin drain, stops it with SIGTERM, then replays its whole raw log into
   a fresh twin and compares the alerts.

Reported: loss (published and confirmed by the broker, but not in the twin's raw log; must be 0),
stalls (gaps between two ``twin/status`` messages longer than two ticks during the run, outside the two
planned outages; must be none; gaps after the feed ended, while this harness reads the whole raw log to
count it and shares the cores with the twin, are listed apart), the twin's RSS at the start and end of
each process and its growth per hour, and whether the live alerts equal the replay's (identifier,
hazard, level, state, times).

The twin's per-device rate limit is off here (as in benchmarks/live.py): the feed sends far more
per device than a real sensor would.

    python benchmarks/soak.py                 # 30 minutes
    python benchmarks/soak.py --minutes 3     # a short check of the harness
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

from ingest.batch import Batch  # noqa: E402
from ingest.decoders import encode_senml  # noqa: E402
from ingest.rawlog import read_log  # noqa: E402
from ingest.registry import load_registry  # noqa: E402
from tests.support.checkout import checkout_env  # noqa: E402
from tests.support.mqtt import PrivateBroker  # noqa: E402
from twin.alerting.store import Store  # noqa: E402
from twin.district.sources import data_dir  # noqa: E402

PREFIX = "soak/"
TICK_S = 1.0
REGISTRY = data_dir() / "bund" / "registry.geojson"
CLIENT_ID = "soak-twin"

TWIN = """
import signal, sys, threading
from pathlib import Path
from ingest.validation import Limits
from twin.live.service import LiveService, ServiceConfig
broker, grid, registry, state, prefix, client_id, tick = sys.argv[1:8]
cfg = ServiceConfig(broker=broker, grid=Path(grid), registry=Path(registry), state_dir=Path(state), tick_s=float(tick),
                    prefix=prefix, client_id=client_id, snapshot_every_s=10.0, limits=Limits(rate_per_s=0.0))
service = LiveService(cfg)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
service.start()
print("started", flush=True)
stop.wait()
service.stop()
print("stopped", flush=True)
"""


# ---------------------------------------------------------------- the twin process
class Twin:
    """The twin in its own process (started, SIGTERMed or SIGKILLed), and its RSS samples."""

    def __init__(self, broker: PrivateBroker, grid: Path, state: Path) -> None:
        self.args = [sys.executable, "-c", TWIN, broker.url, str(grid), str(REGISTRY), str(state), PREFIX,
                     CLIENT_ID, str(TICK_S)]
        self.proc: subprocess.Popen | None = None
        self.rss: list[list[tuple[float, float]]] = []
        self._sampler: threading.Thread | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=checkout_env(), cwd=REPO)
        line = self.proc.stdout.readline()
        if "started" not in line:
            raise RuntimeError(f"the twin did not start: {line}{self.proc.stdout.read()}")
        self.rss.append([])
        self._sampler = threading.Thread(target=self._sample, args=(self.proc, self.rss[-1]), daemon=True)
        self._sampler.start()

    @staticmethod
    def _sample(proc: subprocess.Popen, out: list) -> None:
        while proc.poll() is None:
            try:
                text = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                return
            kb = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS")), None)
            if kb is None:  # the process is ending
                return
            out.append((time.monotonic(), kb / 1024))
            time.sleep(5.0)  # the sampling period

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> float:
        """Send ``sig`` and wait; returns the seconds until the process ended."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"the twin did not stop within {timeout_s} s of signal {sig}") from None
        return time.monotonic() - t0


# ---------------------------------------------------------------- the feed and the watcher
def _client(broker: PrivateBroker, name: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


class Feed:
    """Mixed traffic at a fixed rate: crowd counts cycling through red every five minutes, and bad messages."""

    def __init__(self, broker: PrivateBroker, rate: float, bad: float, seed: int = 0) -> None:
        self.crowd = [d.id for d in load_registry(REGISTRY).of_kind("crowd")]
        self.rate, self.bad, self.rng = rate, bad, np.random.default_rng(seed)
        self.sent = self.confirmed = 0
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.client = _client(broker, "soak-feed")
        self.client.on_publish = self._on_publish
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_publish(self, *_args) -> None:
        with self.lock:
            self.confirmed += 1

    def _message(self, k: int) -> tuple[str, bytes]:
        device = self.crowd[k % len(self.crowd)]
        if self.rng.random() < self.bad:
            if k % 2:  # every payload is unique, so the loss count can tell a resend from a new message
                ghost = f"ghost-{k % 997}"
                return f"{PREFIX}sensors/crowd/{ghost}", f'[{{"bn":"urn:dev:{ghost}:","n":"count","v":{k}}}]'.encode()
            return f"{PREFIX}sensors/crowd/{device}", f'[{{"bn": "urn:dev:{device}:", "n": "count", "v": {k}'.encode()
        t = time.time()
        count = 300.0 + 6000.0 * max(0.0, np.sin(2 * np.pi * t / 300.0))
        return f"{PREFIX}sensors/crowd/{device}", encode_senml(Batch.build(1, device=device, t=t, quantity="count",
                                                                           value=count))

    def _run(self) -> None:
        t0, k = time.monotonic(), 0
        while not self.stop_event.is_set():
            due = int((time.monotonic() - t0) * self.rate)
            while k < due:
                topic, payload = self._message(k)
                self.client.publish(topic, payload, qos=1)
                k += 1
            self.sent = k
            time.sleep(0.005)  # pacing: publish what is due every 5 ms

    def start(self) -> None:
        self.thread.start()

    def finish(self, timeout_s: float = 120.0) -> None:
        """Stop publishing and wait for every confirmation (paho resends after a broker restart)."""
        self.stop_event.set()
        if self.thread.ident is not None:
            self.thread.join()
        deadline = time.monotonic() + timeout_s
        while self.confirmed < self.sent and time.monotonic() < deadline:
            time.sleep(0.1)
        self.client.loop_stop()
        self.client.disconnect()


class Watcher:
    """Arrival times of the twin's status messages, to find stalls."""

    def __init__(self, broker: PrivateBroker) -> None:
        self.times: list[float] = []
        self.client = _client(broker, "soak-watch")
        self.client.on_message = lambda _c, _u, _m: self.times.append(time.monotonic())
        # subscribe on every connect: a clean session after the broker's restart has no subscription
        self.client.on_connect = lambda c, *_: c.subscribe(f"{PREFIX}twin/status", qos=0)
        self.client.subscribe(f"{PREFIX}twin/status", qos=0)

    def stalls(self, outages: list[tuple[float, float]], limit_s: float) -> list[tuple[float, float]]:
        """Gaps longer than ``limit_s`` that do not overlap a planned outage: (start, seconds)."""
        t = np.array(self.times)
        gaps = [(a, b - a) for a, b in itertools.pairwise(t.tolist()) if b - a > limit_s]
        return [(a, g) for a, g in gaps if not any(a < end and a + g > start for start, end in outages)]

    def first_after(self, t: float) -> float:
        later = [x for x in self.times if x > t]
        return later[0] if later else float("inf")


# ---------------------------------------------------------------- measurements
def logged_messages(state: Path) -> int:
    """Distinct data messages in the twin's raw log (control records such as ticks left out, and a message the
    broker delivered twice, e.g. resent after its restart, counted once: every payload of the feed is unique)."""
    return len({(r.topic, r.payload) for r in read_log(state / "rawlog") if r.topic.startswith(PREFIX)})


def capacity(broker: PrivateBroker, grid: Path, work: Path, n: int) -> float:
    """Messages/s the twin drains from a preloaded backlog of ``n`` valid single-record messages."""
    state = work / "capacity"
    twin = Twin(broker, grid, state)
    twin.start()
    twin.stop()  # the persistent session exists now: the broker keeps what follows
    feed = Feed(broker, rate=1e9, bad=0.0)
    for k in range(n):
        topic, payload = feed._message(k)
        feed.client.publish(topic, payload, qos=1)
    feed.sent = n
    feed.finish()
    t0 = time.monotonic()
    twin.start()
    while logged_messages(state) < n and time.monotonic() - t0 < 600:
        time.sleep(0.5)
    rate = n / (time.monotonic() - t0)
    twin.stop()
    return rate


def alert_rows(state_dir: Path) -> list[tuple]:
    store = Store.open(f"sqlite:///{state_dir / 'alerts.db'}")
    try:
        return [(r["identifier"], r["hazard"], r["level"], r["state"], r["raised_at"], r["cancelled_at"])
                for r in store.alerts(None)]
    finally:
        store.close()


def replay_alerts(broker: PrivateBroker, grid: Path, state: Path, work: Path) -> list[tuple]:
    """The alerts of a fresh twin that replays the whole raw log of ``state``."""
    replay = work / "replay"
    replay.mkdir()
    shutil.copytree(state / "rawlog", replay / "rawlog")
    from ingest.validation import Limits
    from twin.live.service import LiveService, ServiceConfig

    cfg = ServiceConfig(broker=broker.url, grid=grid, registry=REGISTRY, state_dir=replay, tick_s=TICK_S,
                        prefix=PREFIX, client_id="soak-replay", snapshot_every_s=3600.0,
                        limits=Limits(rate_per_s=0.0))
    service = LiveService(cfg)  # replays the log; never started
    service.store.close()
    return alert_rows(replay)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run (default 30)")
    parser.add_argument("--load", type=float, default=0.8, help="share of the measured capacity (default 0.8)")
    parser.add_argument("--bad", type=float, default=0.05, help="share of bad messages (default 0.05)")
    parser.add_argument("--capacity-messages", type=int, default=20_000, help="backlog for the capacity step")
    args = parser.parse_args(argv)
    from twin.district.gridfile import build_grid_file

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        grid = build_grid_file(out=work / "bund10.nc", cell=10.0, district="bund", progress=False)
        with PrivateBroker(work / "broker") as broker:
            cap = capacity(broker, grid, work, args.capacity_messages)
            rate = args.load * cap
            print(f"capacity {cap:,.0f} msg/s; feeding {rate:,.0f} msg/s ({args.load:.0%}) for {args.minutes:g} min",
                  flush=True)
            state = work / "state"
            twin, watcher = Twin(broker, grid, state), Watcher(broker)
            twin.start()
            feed = Feed(broker, rate, args.bad)
            feed.start()
            length = args.minutes * 60.0
            t0 = time.monotonic()
            time.sleep(length / 3)  # the run's first third
            down = time.monotonic()
            broker.restart(down_s=3.0)
            time.sleep(max(0.0, t0 + 2 * length / 3 - time.monotonic()))
            killed = time.monotonic()
            twin.stop(signal.SIGKILL)
            twin.start()
            time.sleep(max(0.0, t0 + length - time.monotonic()))
            feed.finish()
            fed = time.monotonic()  # the run ends here; then the harness reads the whole log to count it
            deadline = time.monotonic() + 600
            while logged_messages(state) < feed.confirmed and time.monotonic() < deadline:
                time.sleep(5.0)  # reading the whole log takes a while once it holds millions of messages
            # planned: the twin's start before the run (its first ticks), the broker's restart, the SIGKILL
            outages = [(0.0, t0), (down, watcher.first_after(down + 3.0)), (killed, watcher.first_after(killed))]
            stop_s = twin.stop()
            logged = logged_messages(state)
            stalls = watcher.stalls([*outages, (fed, float("inf"))], 2 * TICK_S)
            after = [g for a, g in watcher.stalls([(0.0, fed)], 2 * TICK_S)]
            live = alert_rows(state)
            loss = feed.confirmed - logged
            print(json.dumps({"published_confirmed": feed.confirmed, "logged": logged, "loss": loss,
                              "status_messages": len(watcher.times), "stalls_over_2_ticks": len(stalls),
                              "longest_stall_s": max((g for _, g in stalls), default=0.0),
                              "stalls_at_s": [[round(a - t0, 1), round(g, 2)] for a, g in stalls],
                              "gaps_after_the_feed_s": [round(g, 2) for g in after],
                              "outage_recovery_s": [round(b - a, 1) for a, b in outages[1:]],
                              "sigterm_stop_s": round(stop_s, 2), "alerts": len(live)}, indent=1), flush=True)
            _print_rss(twin)  # before the replay, which takes a while
            replayed = replay_alerts(broker, grid, state, work)
    print(f"alerts equal to a full replay: {live == replayed} ({len(live)} live, {len(replayed)} replayed)")
    ok = loss == 0 and not stalls and live == replayed
    print("soak: " + ("passed" if ok else "FAILED") + " (loss 0, no stall over 2 ticks, alerts equal to a replay)")
    return 0 if ok else 1


def _print_rss(twin: Twin) -> None:
    """Each twin process's RSS: first and last sample, growth after the first minute, and every two minutes."""
    for i, samples in enumerate(twin.rss):
        if len(samples) >= 2:
            (ta, a), (tb, b) = samples[min(len(samples) - 1, 12)], samples[-1]  # from one minute in
            per_h = (b - a) / max(tb - ta, 1.0) * 3600
            print(f"twin process {i + 1}: RSS {samples[0][1]:.0f} -> {b:.0f} MB, growth after the first minute "
                  f"{b - a:+.0f} MB ({per_h:+.0f} MB/h); by minute: "
                  + ", ".join(f"{(t - samples[0][0]) / 60:.0f}: {mb:.0f}" for t, mb in samples[::24]), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
