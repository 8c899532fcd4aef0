"""The transport's inbound queue is bounded by its producer: ``on_message`` waits while it is full."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from ingest.transport import MqttTransport
from tests.support.waits import wait_until


def test_on_message_waits_while_the_queue_is_full():
    tr = MqttTransport("mqtt://127.0.0.1:1", client_id="queue-bound-test", queue_size=3)  # never connects
    msg = SimpleNamespace(topic="city/sensors/crowd/c0", payload=b"[]", qos=1, mid=1, dup=0, retain=0)
    for _ in range(3):
        tr._on_message(None, None, msg)
    fourth = threading.Thread(target=tr._on_message, args=(None, None, msg), daemon=True)
    fourth.start()
    wait_until(lambda: tr.stats.queue_full_waits == 1, 5.0, "the fourth message to find the queue full")
    assert fourth.is_alive() and tr.queue.qsize() == 3, "the network thread waits instead of growing the queue"
    tr.queue.get_nowait()
    fourth.join(5)
    assert not fourth.is_alive() and tr.queue.qsize() == 3
    assert tr.stats.queue_full_waits == 1 and tr.stats.received == 4
