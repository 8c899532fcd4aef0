"""The transport's flow control has no wait cycle (issue 13; docs/liveness.md), without a broker:

* a transport that subscribes never waits in ``publish``: over its bounds a publish is refused or
  dropped at once, and counted;
* ``close_inbound`` releases a network thread waiting for room, and later messages are left
  unacknowledged (the broker redelivers them), counted;
* ``Ingestor.stop`` ends while messages keep arriving, draining only what was queued when it stopped;
* a dead letter the transport drops is counted, never silent.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from types import SimpleNamespace

import paho.mqtt.client as mqtt

from ingest.pipeline import Ingestor
from ingest.rawlog import RawLog, read_log
from ingest.transport import MqttTransport
from tests.ingest.fakes import FakeSource
from tests.support.waits import wait_until

UNREACHABLE = "mqtt://127.0.0.1:1"  # nothing listens on port 1: the transport never connects


def message(mid: int, qos: int = 1, topic: str = "city/sensors/crowd/c0") -> SimpleNamespace:
    return SimpleNamespace(topic=topic, payload=json.dumps([{"n": "count", "v": mid}]).encode(), qos=qos, mid=mid,
                           dup=0, retain=0)


def test_a_subscribing_transport_never_waits_to_publish_and_counts_what_it_does_not_send():
    tr = MqttTransport(UNREACHABLE, client_id="flow-pub", subscriptions=["city/#"], max_outstanding=6,
                       droppable_budget=3)
    assert tr.publish_waits is False and tr.publisher_id == "flow-pub-out"
    t0 = time.monotonic()
    sent = [tr.publish_droppable("city/deadletter", b"dl") for _ in range(5)]  # paho queues them (no connection)
    assert sent == [True, True, True, False, False]
    infos = [tr.publish("city/alerts/a", b"cap", qos=1, retain=True) for _ in range(4)]
    assert [i.rc for i in infos] == [mqtt.MQTT_ERR_NO_CONN] * 3 + [mqtt.MQTT_ERR_QUEUE_SIZE]
    assert time.monotonic() - t0 < 1.0, "publish waited"
    assert (tr.outstanding, tr.stats.publish_dropped, tr.stats.publish_refused) == (6, 2, 1)
    assert not tr.wait_published(0.05), "nothing is confirmed without a broker"
    tr.stop(timeout_s=0.1)


def test_a_publish_only_transport_publishes_on_its_one_connection():
    tr = MqttTransport(UNREACHABLE, client_id="flow-feed")
    assert tr.publish_waits is True and tr.publisher_id == "flow-feed" and tr._out is tr._client


def test_close_inbound_releases_a_network_thread_waiting_for_room_and_leaves_later_messages_unacked():
    tr = MqttTransport(UNREACHABLE, client_id="flow-close", subscriptions=["city/#"], queue_size=2)
    for mid in (1, 2):
        tr._on_message(None, None, message(mid))
    third = threading.Thread(target=tr._on_message, args=(None, None, message(3)), daemon=True)
    third.start()
    wait_until(lambda: tr.stats.queue_full_waits == 1, 5, "the third message to find the queue full")
    assert third.is_alive()
    tr.close_inbound()
    third.join(5)
    assert not third.is_alive(), "close_inbound did not release the waiting network thread"
    tr._on_message(None, None, message(4))
    tr._on_message(None, None, message(5, qos=0))
    assert tr.queue.qsize() == 2, "nothing is queued once the inbound side is closed"
    assert (tr.stats.received, tr.stats.left_unacked, tr.stats.dropped_qos0) == (5, 2, 1)
    assert tr.stats.queue_high_water == 2


def test_the_ingestor_stops_during_a_flood_and_drains_only_what_was_queued(tmp_path):
    tr = MqttTransport(UNREACHABLE, client_id="flow-stop", subscriptions=["city/#"], queue_size=500)
    ingestor = Ingestor(tr, RawLog(tmp_path / "log"), None, lambda batch: None)
    done = threading.Event()

    def flood() -> None:  # the network thread, as fast as it can, until the inbound side closes
        for mid in itertools.count(1):
            tr._on_message(None, None, message(mid))
            if tr.stats.left_unacked:
                break
        done.set()

    ingestor.start()
    threading.Thread(target=flood, daemon=True).start()
    wait_until(lambda: ingestor.metrics.received >= 5000, 30, "5000 messages through the ingestor")
    t0 = time.monotonic()
    ingestor.stop(timeout_s=10)
    assert time.monotonic() - t0 < 5, "the ingestor did not stop during the flood"
    assert not ingestor._thread.is_alive()
    assert done.wait(5), "the flooding network thread was not released"
    left = tr.queue.qsize()
    logged = sum(1 for _ in read_log(tmp_path / "log"))
    ingestor.log.close()
    assert logged == ingestor.metrics.received == tr.stats.received - tr.stats.left_unacked - left
    assert left <= tr.queue_size


def test_a_dead_letter_the_transport_drops_is_counted(tmp_path):
    class Refusing(FakeSource):
        def publish_droppable(self, topic, payload, *, qos=1, retain=False):
            return False

    src = Refusing()
    ingestor = Ingestor(src, RawLog(tmp_path / "log"), None, lambda batch: None)
    for k in range(3):
        src.put("city/sensors/crowd/c0", b"{not json %d" % k)
    while ingestor.run_once(poll_s=0.01):
        pass
    m = ingestor.metrics.snapshot()
    assert m["rejected"]["bad_syntax"] == 3 and m["deadletters"] == 0
    assert ingestor.deadletters_dropped == 3 and src.published == []
    ingestor.log.close()

