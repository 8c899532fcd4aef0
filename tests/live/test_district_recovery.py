"""District twin recovery = snapshot + stream position (docs/city-deployment.md section 4).

A twin restored from its snapshot that reads the records after it reaches the state of a twin that never stopped
(``MemoryStream``). Then the real thing: a ``twin district`` process reading NATS JetStream, killed with SIGKILL
while the stream is being written and started again, loses no acknowledged record and raises no alert twice.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import threading
import uuid

import pytest
import xarray as xr

from ingest.registry import load_registry
from ingest.stream import MemoryStream
from tests.live.conftest import REGISTRY
from tests.live.test_district_twin import DISTRICT, T0, TICK_S, make_twin, publish_ticks, stored_messages, story
from tests.support.checkout import checkout_env
from tests.support.mqtt import broker_listening
from tests.support.waits import wait_until
from twin.alerting.store import Store
from twin.district.dataset import load_twin
from twin.live.core import TwinCore
from twin.live.district_handover import HANDOVER_PARTITION
from twin.live.district_twin import DistrictConfig, DistrictTwin, district_core_config

NATS_URL = "nats://127.0.0.1:4222"


@pytest.fixture(scope="module")
def registry():
    return load_registry(REGISTRY)


def test_a_snapshot_and_the_records_after_it_give_the_state_of_an_uninterrupted_run(bund10, registry, tmp_path):
    static, every = bund10[0], 4 * TICK_S  # snapshots at ticks 0, 4, 8, 12
    stream = MemoryStream()
    publish_ticks(stream, DISTRICT, registry, range(10))
    first = make_twin(static, registry, stream, tmp_path / "crashed", snapshot_every_s=every)
    first.catch_up(60)
    assert 0 < first.snapshot_seq < first.positions[DISTRICT], "records applied after the last snapshot"
    first.close()  # a crash: no snapshot at stop, the state after tick 8 is lost
    publish_ticks(stream, DISTRICT, registry, range(10, 16))
    second = make_twin(static, registry, stream, tmp_path / "crashed", snapshot_every_s=every)
    assert second.restored and second.positions[DISTRICT] == first.snapshot_seq
    second.catch_up(60)
    reference = make_twin(static, registry, stream, tmp_path / "reference", snapshot_every_s=every)
    reference.catch_up(60)
    served, expected = stored_messages(second.store), stored_messages(reference.store)
    assert served == expected and len(served) >= 3, "the same CAP messages, none stored twice"
    assert len({m["identifier"] for m in served}) == len(served)
    xr.testing.assert_identical(second.core.models.layers, reference.core.models.layers)
    assert second.core.book.sequence == reference.core.book.sequence
    assert json.dumps(second.core.state.entities.save_state()) == json.dumps(reference.core.state.entities.save_state())
    assert dataclasses.asdict(second.counts) == dataclasses.asdict(reference.counts)
    assert second.positions == reference.positions
    for twin in (second, reference):
        twin.close()


# ---------------------------------------------------------------- SIGKILL under load, on NATS JetStream
class Feeder:
    """The ingest workers and the city clock of one district: tick k's batches then tick k, each tick's records
    flushed (acknowledged by JetStream) before the next; counts the rows acknowledged. The first ``burst`` ticks go
    at once (the twin falls behind), then it waits for ``resume`` and feeds the rest ``pace_s`` apart."""

    def __init__(self, stream, registry, ticks: int, burst: int, pace_s: float) -> None:
        self.stream, self.registry, self.ticks, self.burst, self.pace_s = stream, registry, ticks, burst, pace_s
        self.rows = 0
        self.fed = 0
        self.resume = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        try:
            for k in range(self.ticks):
                if k == self.burst and not self.resume.wait(60):
                    raise TimeoutError("not resumed within 60 s")
                if self.stop.is_set():
                    return
                self.rows += publish_ticks(self.stream, DISTRICT, self.registry, range(k, k + 1))
                self.fed = k + 1
                if k >= self.burst:
                    self.stop.wait(self.pace_s)  # the pace of the feed (a tick of twin time every pace_s)
        except BaseException as exc:  # the test reports it
            self.error = exc


def _status(state) -> dict:
    path = state / "status.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.skipif(not broker_listening(port=4222), reason="no nats-server listens on 127.0.0.1:4222 "
                    "(.ci/run starts one: nats-server -js)")
def test_sigkill_under_load_and_a_restart_lose_no_acknowledged_record_and_raise_no_alert_twice(
        broker, bund_file, registry, tmp_path):
    from ingest.stream.jetstream import JetStream

    name = f"TEST_{uuid.uuid4().hex[:10]}"
    subjects = f"test.{name}."
    js = JetStream(NATS_URL, stream=name, subject_prefix=subjects, duplicate_window_s=120.0, max_age_s=600.0)
    js.ensure([DISTRICT, HANDOVER_PARTITION])
    state = tmp_path / "state"
    cmd = [sys.executable, "-m", "twin.cli.district", "--grid", str(bund_file), "--registry", str(REGISTRY),
           "--partition", DISTRICT, "--nats", NATS_URL, "--stream", name, "--subject-prefix", subjects,
           "--broker", broker.url, "--state", str(state), "--tick", str(TICK_S), "--snapshot-every",
           str(2 * TICK_S), "--status-every", "0.2", "--client-id", f"district-{name}"]
    env = checkout_env(PYTHONUNBUFFERED="1")
    feeder = Feeder(js, registry, ticks=30, burst=20, pace_s=0.1)
    log_path = tmp_path / "first.log"
    first = second = None
    try:
        with open(log_path, "w") as out:  # a file, not a pipe nobody reads until the kill
            first = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        wait_until(lambda: _status(state), 90, lambda: f"the first twin's status ({log_path.read_text()[-2000:]})")
        feeder.thread.start()
        wait_until(lambda: 0 < _status(state).get("snapshot_seq", 0) < _status(state).get("applied_seq", 0)
                   and _status(state).get("ticks", 0) >= 3, 60,
                   lambda: f"records applied after a snapshot ({_status(state)})")
        first.send_signal(signal.SIGKILL)  # under load: behind the stream, and the feed goes on
        first.wait(10)
        lost = _status(state)
        feeder.resume.set()
        second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        feeder.thread.join(60)
        assert feeder.error is None and feeder.fed == feeder.ticks, feeder.error
        last = js.last_seq(DISTRICT)
        wait_until(lambda: _status(state).get("restored") and _status(state).get("applied_seq", 0) >= last, 90,
                   lambda: f"the second twin caught up with {last} ({_status(state)})")
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 0, out
        assert "recovered: last snapshot loaded" in out
    finally:
        feeder.stop.set()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert lost["applied_seq"] > lost["snapshot_seq"], "the kill lost applied records (replayed from the stream)"
    assert lost["lag"] > 0, "killed while behind the stream"
    # the reference: a core fed the same batches and ticks, uninterrupted
    static, _ = load_twin(bund_file)
    cli_core = district_core_config(DISTRICT, "city/", TICK_S)  # the core `twin district` runs
    reference = TwinCore(static, registry, Store.open(tmp_path / "reference.db"), cli_core)
    for k in range(feeder.ticks):
        for b in story(registry, k):
            reference.on_batch(b)
        reference.on_tick(T0 + TICK_S * k)
    store = Store.open(state / "alerts.db")
    served, expected = stored_messages(store), stored_messages(reference.store)
    store.close()
    assert len({m["identifier"] for m in served}) == len(served), "no alert message stored twice"
    assert served == expected and served, "the same alerts as the run that never stopped"
    restored = DistrictTwin(static, registry, js, state, DistrictConfig(DISTRICT, core=cli_core))
    try:
        assert restored.restored
        assert restored.counts.rows == feeder.rows, "every acknowledged row applied once"
        assert (restored.counts.ticks, restored.counts.duplicates) == (feeder.ticks, 0)
        for layer in ("crowd_density", "level_crowd", "water_depth"):
            xr.testing.assert_equal(restored.core.models.layers[layer], reference.models.layers[layer])
    finally:
        restored.close()
        reference.store.close()
        js.delete()
        js.close()
