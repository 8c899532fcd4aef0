"""``twin run --city`` end to end: the four-district Bund (data/city/bund4.yaml) from one command, over the real
Mosquitto (127.0.0.1:1883) and NATS JetStream (127.0.0.1:4222).

The test's city is bund4 with one more registry file: two crowd counters on the deck of Waibaidu Bridge (外白渡桥),
one each side of the Huangpu (310101) / Hongkou (310109) border over Suzhou Creek. Their coverage is the bridge of
the bundled crowd places (data/bund/crowd-bands.geojson) cut by the district boundaries, and each states the deck's
area as its ``walkable_area_m2`` (the grid twin holds the creek under the deck as water). The Bund's own counter at
the bridge's south end, ``crowd-bund-01``, covers the promenade 72 m south of the border, across the creek: its
alert and a north-bank alert would be two city alerts (the city tier merges areas within one cell), so the crowd
here packs the bridge itself.

Devices publish SenML over MQTT as devices do. The test asserts that the two ingest workers split the messages,
that each district twin applies exactly the records of its own counter, that both districts raise a crowd alert,
that the city tier publishes exactly one retained city alert over both, that everything is cancelled when the
crowd leaves, and that SIGTERM stops the deployment cleanly with no child process left. A district twin killed
with SIGKILL while the counts flow is restarted by the supervisor and loses no acknowledged record.

Each run has its own stream, subjects, topic prefix, MQTT client ids (named after the stream), state and cache
folders; the stream and the MQTT sessions are removed afterwards. Everything waits on events (MQTT messages, the
supervisor's output, process ends) with timeouts; the run takes about 35 s, plus 10 s to build the city once.

Two quick tests come first, without services: the parts of a city get the manifest's subjects and MQTT names of
their own (so that two cities share a broker and a NATS server), and the parts end when their supervisor is killed
(a restarted ``twin run --city`` would otherwise start a second set on the same state folders).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import shapely
from shapely.geometry import mapping, shape

from ingest.batch import Batch
from ingest.decoders.senml import encode_senml
from ingest.routing import subscriptions
from ingest.transport.client import MqttTransport
from tests.city.test_tier_e2e import Observer, retained_city_alerts
from tests.support.checkout import checkout_env
from tests.support.mqtt import REPO, broker_listening, end_session, stop_tree, subscribed_event
from tests.support.waits import wait_until
from twin.city.boundaries import projected, read_boundaries
from twin.cli.city_run import free_loopback_port, mqtt_names
from twin.district.sources import data_dir

services_here = pytest.mark.skipif(not (broker_listening() and broker_listening(port=4222)),
                                   reason="needs Mosquitto on 127.0.0.1:1883 and nats-server -js on 127.0.0.1:4222 "
                                          "(CI starts both)")

HUANGPU, HONGKOU = "310101", "310109"
COUNTERS = {HUANGPU: "crowd-waibaidu-s", HONGKOU: "crowd-waibaidu-n"}
"""The test's counters on the bridge deck, by the district each lies in."""
DENSITY = 1.5
"""The packed bridge [person m-2]: blue (raise 1.08, yellow from 2.0, models.config.CrowdConfig), so the alerts
clear one colour step (AlertTiming.keep_s, 10 s) after the crowd leaves."""
FEED_EVERY_S = 0.25
"""Pace of the counters' readings [s]."""
WORKERS = 2


# ---------------------------------------------------------------- the city
DECK_SOUTH_LAT = 31.2449
"""The deck counters start here, north of the cells of crowd-bund-01 (its coverage ends at 31.2448): a cell two
counters cover belongs to one of them, and would be a separate alert place. [degree]"""


def bridge_counters() -> list[dict]:
    """Registry features of the two deck counters: the bundled bridge place north of `DECK_SOUTH_LAT`, cut at the
    district border."""
    bands = json.loads((data_dir() / "bund" / "crowd-bands.geojson").read_text(encoding="utf-8"))
    bridge = next(shape(f["geometry"]) for f in bands["features"] if f["properties"]["name"] == "Waibaidu Bridge")
    deck = shapely.intersection(bridge, shapely.box(121.48, DECK_SOUTH_LAT, 121.49, 31.25))
    bounds = read_boundaries()
    features = []
    for code, device in COUNTERS.items():
        half = shapely.set_precision(shapely.intersection(deck, bounds[code].geometry), 1e-6)
        features.append({"type": "Feature", "geometry": mapping(half), "properties": {
            "id": device, "kind": "crowd", "quantities": ["count"], "coverage": "polygon",
            "name": f"外白渡桥 Waibaidu Bridge deck ({bounds[code].name_en})",
            "walkable_area_m2": round(projected(half).area, 1)}})
    return features


def write_manifest(folder: Path, registry: Path, stream: str = "TWIN", prefix: str = "city/") -> Path:
    """bund4 with the deck counters' registry, on its own stream, subjects and topic prefix."""
    text = (data_dir() / "city" / "bund4.yaml").read_text(encoding="utf-8")
    text = text.replace("  name: TWIN\n", f"  name: {stream}\n  subjects: test.{stream}.\n  max_age_h: 1\n", 1)
    text = text.replace("  max_age_h: 24\n", "", 1).replace("  prefix: city/\n", f"  prefix: {prefix}\n", 1)
    text = text.replace("registry: [bundled:bund]", f"registry: [bundled:bund, {registry}]", 1)
    path = folder / "bund4-e2e.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def e2e_city(tmp_path_factory):
    """The test city built once (about 10 s): (registry file, cache folder, {device: walkable area m2})."""
    from twin.city.city import load_city

    folder = tmp_path_factory.mktemp("bund4-e2e")
    features = bridge_counters()
    registry = folder / "waibaidu-deck.geojson"
    registry.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    city = load_city(write_manifest(folder, registry), cache=folder / "cache")
    report = city.build()
    city.raster()
    assert report.assignment.home[COUNTERS[HUANGPU]] == HUANGPU
    assert report.assignment.home[COUNTERS[HONGKOU]] == HONGKOU
    return registry, city.cache, {f["properties"]["id"]: f["properties"]["walkable_area_m2"] for f in features}


# ---------------------------------------------------------------- the deployment
class Deployment:
    """One ``twin run --city`` child process of the test: its manifest, stream, prefix, state and log."""

    def __init__(self, tmp_path: Path, registry: Path, cache: Path) -> None:
        self.stream = f"TEST_{uuid.uuid4().hex[:10]}"
        self.prefix = f"citytwin-e2e-{uuid.uuid4().hex[:8]}/"
        self.manifest = write_manifest(tmp_path, registry, self.stream, self.prefix)
        self.state, self.log = tmp_path / "state", tmp_path / "run.log"
        self.city_api = f"http://127.0.0.1:{free_loopback_port()}"
        self.cmd = [sys.executable, "-m", "twin.cli", "run", "--city", str(self.manifest), "--workers", str(WORKERS),
                    "--city-cache", str(cache), "--city-http", self.city_api.rsplit(":", 1)[1],
                    "--state", str(self.state)]
        from twin.city.manifest import load_manifest

        self.names = mqtt_names(load_manifest(self.manifest))
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.cond = threading.Condition()

    @property
    def worker_ids(self) -> list[str]:
        return [f"{self.names['base']}-ingest-w{k}" for k in range(1, WORKERS + 1)]

    def client_ids(self) -> list[str]:
        """Every MQTT client id the deployment uses (its persistent sessions)."""
        return [*self.worker_ids, self.names["tier"],
                *(f"{self.names['base']}-district-{p}" for p in (HUANGPU, HONGKOU, "310110", "310115"))]

    def open_sessions(self) -> None:
        """The workers' sessions and shared subscriptions, made before the deployment starts: the broker queues
        every reading for them from now on (round robin within the share group), whenever the workers connect."""
        for client_id in self.worker_ids:
            pre = MqttTransport("mqtt://127.0.0.1:1883", client_id=client_id, subscriptions=subscriptions(self.prefix),
                                share_group=self.names["group"])
            subscribed = subscribed_event(pre)
            assert pre.start(10) and subscribed.wait(10), "the pre-made worker session"
            pre.stop()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=REPO, env=checkout_env(PYTHONUNBUFFERED="1"))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log, "w", encoding="utf-8") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                with self.cond:
                    self.lines.append(line.rstrip())
                    self.cond.notify_all()

    def wait_line(self, predicate, timeout_s: float, what: str, after: int = 0) -> str:
        """The first line of the output from line ``after`` on that satisfies ``predicate`` (past or future)."""
        with self.cond:
            found: list[str] = []

            def seen() -> bool:
                found[:] = [line for line in self.lines[after:] if predicate(line)][:1]
                return bool(found) or self.proc.poll() is not None

            self.cond.wait_for(seen, timeout_s)
            assert found, f"timed out after {timeout_s:g} s waiting for {what}; output:\n" + self.tail()
            return found[0]

    def tail(self, n: int = 60) -> str:
        with self.cond:
            return "\n".join(self.lines[-n:])

    def children(self) -> dict[int, str]:
        """The running child processes of ``twin run`` (pid: command line)."""
        assert self.proc is not None
        out = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.proc.pid:
                    out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                continue
        return out

    def cleanup(self) -> None:
        """Stop what is left, delete the stream, end the MQTT sessions."""
        from ingest.stream.base import StreamError
        from ingest.stream.jetstream import JetStream

        if self.proc is not None and self.proc.poll() is None:  # the test failed: stop the parts as a user would
            stop_tree(self.proc, self.children(), 40)
        js = JetStream("nats://127.0.0.1:4222", stream=self.stream, subject_prefix=f"test.{self.stream}.")
        with contextlib.suppress(StreamError):  # nothing was created (the deployment never got that far)
            js.delete()
        js.close()
        for client_id in self.client_ids():
            end_session(client_id)


class Feed:
    """The two deck counters: a SenML reading each every `FEED_EVERY_S`, ``people`` on each; counts what the broker
    acknowledged, by device."""

    def __init__(self, prefix: str, walkable: dict[str, float]) -> None:
        self.prefix, self.walkable = prefix, walkable
        self.density = 0.0
        self.published: Counter[str] = Counter()
        self.stop = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            t = round(time.time(), 3)
            for device, area in self.walkable.items():
                reading = Batch.build(1, device=device, t=t, quantity="count", value=round(self.density * area))
                info = self.client.publish(f"{self.prefix}sensors/crowd/{device}", encode_senml(reading), qos=1)
                info.wait_for_publish(10)
                self.published[device] += 1
            self.stop.wait(FEED_EVERY_S)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)
        self.client.disconnect()
        self.client.loop_stop()


# ---------------------------------------------------------------- reading the output
def district_alerts(obs: Observer, district: str, msg_type: str | None = None) -> list[dict]:
    """The district's crowd alert messages seen so far."""
    return [m for m in obs.json_on(f"alerts/{district}/")
            if _hazard(m) == "crowd" and (msg_type is None or m["msgType"] == msg_type)]


def _hazard(message: dict) -> str:
    params = {p["valueName"]: p["value"] for p in message["info"][0].get("parameter", [])}
    return params.get("hazard", "")


def members(message: dict) -> set[str]:
    """The district alerts a city alert references, by their first identifier (an Update's reference names
    ``<id>.update<n>``)."""
    return {re.sub(r"\.(update|cancel)\d+$", "", r.split(",")[1]) for r in message.get("references", "").split()
            if not r.startswith("twin.city@")}


def area_of(message: dict) -> shapely.Geometry:
    """The union of a CAP message's polygons (lon/lat; CAP writes lat,lon)."""
    rings = [[tuple(map(float, p.split(",")))[::-1] for p in poly.split()]
             for area in message["info"][0]["area"] for poly in area.get("polygon", [])]
    return shapely.union_all([shapely.Polygon(r) for r in rings])


def city_indicator_statuses(run: Deployment) -> dict[str, str]:
    """Per district, the status of its vital signs in the city API (``ok`` once its twin's API answers)."""
    try:
        with urllib.request.urlopen(f"{run.city_api}/api/city/indicators", timeout=5) as r:
            return {d["partition"]: d["status"] for d in json.loads(r.read())["districts"] if d["nodes"]}
    except OSError as exc:
        return {"error": str(exc)}


def statuses(obs: Observer) -> dict[str, dict]:
    """The last status each district twin published."""
    out = {}
    for m in obs.json_on("twin/status/"):
        out[m.get("partition", "")] = m
    return out


# ---------------------------------------------------------------- the tests
def test_a_city_has_its_own_subjects_client_ids_and_share_group(tmp_path):
    import argparse

    from twin.city.city import load_city
    from twin.city.manifest import ManifestError
    from twin.cli.city_run import city_children

    registry = tmp_path / "none.geojson"
    registry.write_text('{"type": "FeatureCollection", "features": []}', encoding="utf-8")
    city = load_city(write_manifest(tmp_path, registry, "TEST_A", "a/"), cache=tmp_path / "cache")
    assert city.manifest.stream.subjects == "test.TEST_A."
    args = argparse.Namespace(city=city.manifest.path, workers=2, city_http=0)
    argv = {c.name: c.argv for c in city_children(city, args, "nats://x:4222", "mqtt://x:1883", tmp_path)}

    def option(name: str, key: str) -> str:
        return argv[name][argv[name].index(key) + 1]

    assert {option(n, "--subject-prefix") for n in argv if n != "city-tier"} == {"test.TEST_A."}
    assert [option(f"ingest-w{k}", "--client-id") for k in (1, 2)] == ["citytwin-TEST_A-ingest-w1",
                                                                      "citytwin-TEST_A-ingest-w2"]
    assert {option(f"ingest-w{k}", "--group") for k in (1, 2)} == {"citytwin-TEST_A-ingest"}
    assert option("ingest-w1", "--max-age") == "3600"  # the manifest's max_age_h, whichever part creates the stream
    assert option("district-310109", "--client-id") == "citytwin-TEST_A-district-310109"
    assert option("city-tier", "--client-id") == "citytwin-TEST_A-city-tier"
    bad = tmp_path / "bad.yaml"
    bad.write_text(city.manifest.path.read_text(encoding="utf-8").replace("subjects: test.TEST_A.", "subjects: a.>"),
                   encoding="utf-8")
    with pytest.raises(ManifestError, match=r"stream\.subjects: must be a NATS subject prefix"):
        load_city(bad)


SUPERVISED = """\
import sys
from twin.cli.supervise import Child, Supervisor
child = Child("sleeper", [sys.executable, "-c", "import time\\nwhile True: time.sleep(0.05)"])
supervisor = Supervisor([child], say=lambda line: None)
supervisor.start()
print(child.proc.pid, flush=True)
sys.stdin.read()  # a supervisor that runs until it is killed (or its stdin closes)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_parts_end_when_the_supervisor_is_killed():
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISED], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, cwd=REPO, env=checkout_env())
    try:
        child = int(supervisor.stdout.readline())
        assert "time.sleep(0.05)" in Path(f"/proc/{child}/cmdline").read_bytes().decode()  # the command itself runs
        supervisor.kill()
        supervisor.wait(10)
        wait_until(lambda: not Path(f"/proc/{child}").exists(), 10, "the orphaned part to end")
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(10)


@pytest.mark.slow
@pytest.mark.broker
@services_here
def test_the_four_district_city_runs_from_one_command_and_a_crowd_across_the_border_is_one_alert(e2e_city, tmp_path):
    registry, cache, walkable = e2e_city
    run = Deployment(tmp_path, registry, cache)
    obs = Observer(f"{run.prefix}#")
    feed = None
    try:
        run.open_sessions()
        run.start()
        run.wait_line(lambda line: line.startswith("[supervisor] started 7 parts"), 60, "the parts to start")
        wait_until(lambda: set(statuses(obs)) >= {HUANGPU, HONGKOU, "310110", "310115"}, 90,
                   lambda: f"every district twin's status after a tick; got {sorted(statuses(obs))}\n{run.tail()}")
        # each district twin serves its API and the city tier reads its vital signs there
        wait_until(lambda: city_indicator_statuses(run) == dict.fromkeys((HUANGPU, HONGKOU, "310110", "310115"), "ok"),
                   30, lambda: f"every district's vital signs in the city API: {city_indicator_statuses(run)}")

        # the crowd packs the bridge: a blue crowd alert in each district, one city alert over both
        feed = Feed(run.prefix, walkable)
        feed.density = DENSITY
        city = wait_until(lambda: [m for m in obs.json_on("cityalerts/") if _hazard(m) == "crowd"
                                   and {HUANGPU, HONGKOU} <= {i.split(".")[1] for i in members(m)}], 60,
                          lambda: f"a crowd city alert over both districts\n{run.tail()}")[-1]
        raised = {d: district_alerts(obs, d, "Alert") for d in (HUANGPU, HONGKOU)}
        assert [len(raised[d]) for d in (HUANGPU, HONGKOU)] == [1, 1], raised  # one place each: the deck
        ids = {raised[d][0]["identifier"] for d in (HUANGPU, HONGKOU)}
        retained = [m for m in retained_city_alerts(run.prefix) if _hazard(m) == "crowd"]
        assert len(retained) == 1, [m["identifier"] for m in retained]
        assert members(retained[0]) == ids and retained[0]["identifier"] == city["identifier"]
        params = {p["valueName"]: p["value"] for p in retained[0]["info"][0]["parameter"]}
        assert params["districts"].split() == [HUANGPU, HONGKOU] and params["members"] == "2"
        union = area_of(retained[0]).buffer(1e-5)  # about 1 m: the union is simplified by 0.5 m
        for d in (HUANGPU, HONGKOU):
            assert union.covers(area_of(raised[d][0])), f"the city area covers {d}'s"
        cid = city["identifier"].split(".update")[0]

        # a district twin killed with SIGKILL while the counts flow: restarted, no acknowledged record lost
        killed = next(pid for pid, cmd in run.children().items() if f"--district {HONGKOU}" in cmd)
        before = len(run.lines)
        os.kill(killed, signal.SIGKILL)
        run.wait_line(lambda line: line.startswith(f"[supervisor] district-{HONGKOU} ended with status -9"), 20,
                      "the supervisor to see the kill", after=before)
        run.wait_line(lambda line: line.startswith(f"[district-{HONGKOU}] district twin {HONGKOU} running"), 60,
                      "the killed twin running again", after=before)

        # the crowd leaves: the district alerts and the city alert are cancelled and removed
        feed.density = 0.0
        for d in (HUANGPU, HONGKOU):
            wait_until(lambda d=d: district_alerts(obs, d, "Cancel"), 60,
                       lambda d=d: f"the Cancel of {d}'s alert\n{run.tail()}")
        wait_until(lambda: any(m["msgType"] == "Cancel" for m in obs.json_on(f"cityalerts/{cid}")), 30,
                   "the city alert's Cancel")
        wait_until(lambda: retained_city_alerts(run.prefix) == [], 30, "no city alert left (forecasts included)")
        feed.close()

        # every acknowledged reading applied once, by the twin of its district (the killed one included)
        def rows_applied() -> bool:
            s = statuses(obs)
            return all(s.get(d, {}).get("rows") == feed.published[COUNTERS[d]] for d in (HUANGPU, HONGKOU))

        wait_until(rows_applied, 60, lambda: f"rows == published {dict(feed.published)}: " + str(
            {d: (s.get("rows"), s.get("duplicates"), s.get("restored")) for d, s in statuses(obs).items()}))
        final = statuses(obs)
        assert final["310110"]["rows"] == 0 and final["310115"]["rows"] == 0
        assert final[HUANGPU]["duplicates"] == 0 and final[HONGKOU]["duplicates"] == 0

        # SIGTERM: a clean stop, exit 0, no child left
        children = run.children()
        assert len(children) == 7, children  # 2 ingest workers, 4 district twins, the city tier
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(60) == 0, run.tail()
        assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "children left running"
        received = {}
        for w in range(1, WORKERS + 1):
            status = json.loads((run.state / "city" / run.manifest.stem / "ingest" / f"w{w}" / "status.json")
                                .read_text(encoding="utf-8"))
            received[w] = status["ingest"]["received"]
        assert all(n > 0 for n in received.values()), received  # the shared subscription split the load
        assert sum(received.values()) == sum(feed.published.values())
    finally:
        if feed is not None:
            feed.close()
        obs.close()
        run.cleanup()
