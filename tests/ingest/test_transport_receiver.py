"""The subscriber in a child process (`ingest.transport.receiver.ProcessTransport`, docs/liveness.md section 8):
the same contract as the in-process transport, through a real Mosquitto, and it survives its child's death.

- messages arrive in the broker's order; acknowledged ones are not delivered again to the next session;
- a child killed with SIGKILL is started again, its unacknowledged messages come again (nothing lost) and the
  acknowledgements of the dead child's messages are skipped, counted;
- a consumer that takes nothing: the queue stays at its bound, the broker at Receive Maximum, ``stop`` still
  returns, and the next session gets every message;
- the child dies with its parent;
- the consumer's queue is a FIFO (hypothesis).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.transport.receiver import InboundQueue, ProcessTransport
from tests.support.mqtt import flood
from tests.support.waits import wait_until

TOPIC = "rx/sensors/"


def _transport(broker, client_id: str, **extra) -> ProcessTransport:
    return ProcessTransport(broker.url, client_id=client_id, subscriptions=[f"{TOPIC}#"], **extra)


def _messages(n: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [(f"{TOPIC}d{i % 7}", str(i).encode()) for i in range(start, start + n)]


def _take(tr: ProcessTransport, n: int, timeout_s: float = 30.0, ack: bool = True) -> list:
    """``n`` messages off the queue (acknowledged and flushed when ``ack``); fails after ``timeout_s``."""
    out, deadline = [], time.monotonic() + timeout_s
    while len(out) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"{len(out)} of {n} messages arrived in {timeout_s} s"
        try:
            m = tr.queue.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        out.append(m)
        if ack:
            tr.ack(m)
            if len(out) % 100 == 0:
                tr.flush_acks()
    if ack:
        tr.flush_acks()
    return out


def test_messages_arrive_in_order_and_acknowledged_ones_are_not_sent_again(broker):
    tr = _transport(broker, "rx-order")
    assert tr.start(15)
    tr.stop()  # the session exists: what follows is kept for it
    flood(broker.port, _messages(2000), client_id="rx-order-feed")
    tr = _transport(broker, "rx-order")
    assert tr.start(15)
    try:
        got = _take(tr, 2000)
        assert [int(m.payload) for m in got] == list(range(2000)), "not in the broker's order"
        assert all(m.topic.startswith(TOPIC) and m.qos == 1 for m in got)
        wait_until(lambda: tr.stats.acked == 2000, 10, lambda: f"2000 acknowledged (child: {tr.stats.acked})")
        assert tr.stats.received == 2000 and tr.receiver_restarts == 0
    finally:
        tr.stop()
    tr = _transport(broker, "rx-order")
    assert tr.start(15)
    try:
        flood(broker.port, [(f"{TOPIC}marker", b"-1")], client_id="rx-order-feed")
        # a redelivered message would come before the marker: the session's queue is sent first, in order
        assert [int(m.payload) for m in _take(tr, 1)] == [-1], "an acknowledged message came again"
    finally:
        tr.stop()


def test_a_killed_receiver_is_started_again_and_its_unacknowledged_messages_come_again(broker):
    tr = _transport(broker, "rx-kill")
    assert tr.start(15)
    try:
        flood(broker.port, _messages(300), client_id="rx-kill-feed")
        first = _take(tr, 300, ack=False)  # taken, not acknowledged
        assert [int(m.payload) for m in first] == list(range(300))
        os.kill(tr._proc.pid, signal.SIGKILL)
        wait_until(lambda: tr.receiver_restarts == 1 and tr.connected.is_set(), 30, "the receiver started again")
        for m in first:  # acknowledgements of the dead child's messages: void
            tr.ack(m)
        tr.flush_acks()
        assert tr.stats.acks_skipped_stale >= 300
        again = _take(tr, 300)
        assert sorted(int(m.payload) for m in again) == list(range(300)), "a message was lost with the child"
        flood(broker.port, _messages(50, start=300), client_id="rx-kill-feed")
        assert [int(m.payload) for m in _take(tr, 50)] == list(range(300, 350))
    finally:
        tr.stop()


def test_a_consumer_that_takes_nothing_bounds_the_queue_and_stop_still_returns(broker):
    tr = _transport(broker, "rx-full", receive_maximum=1000, queue_size=200)
    assert tr.start(15)
    try:
        flood(broker.port, _messages(3000), client_id="rx-full-feed")
        wait_until(lambda: tr.queue.qsize() == 200, 20, lambda: f"the queue full ({tr.queue.qsize()})")
        wait_until(lambda: tr.stats.received > 200, 20, "more messages in the child than the queue holds")
        assert tr.queue.qsize() == 200, "the queue grew past its bound"
        assert tr.stats.received <= 1000, "the broker sent more than Receive Maximum unacknowledged messages"
    finally:
        t0 = time.monotonic()
        tr.stop(timeout_s=5)
        assert time.monotonic() - t0 < 12, "stop waited on a full queue"
    tr = _transport(broker, "rx-full")
    assert tr.start(15)
    try:
        got = _take(tr, 3000)
        assert sorted({int(m.payload) for m in got}) == list(range(3000)), "a message was lost"
    finally:
        tr.stop()


CHILD_OF_A_KILLED_PARENT = textwrap.dedent("""
    import sys, time
    from ingest.transport.receiver import ProcessTransport
    tr = ProcessTransport(sys.argv[1], client_id="rx-orphan", subscriptions=["rx/#"])
    tr.start(15)
    print(tr._proc.pid, flush=True)
    sys.stdin.read()  # until killed
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_receiver_dies_with_its_parent(broker):
    parent = subprocess.Popen([sys.executable, "-c", CHILD_OF_A_KILLED_PARENT, broker.url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.kill()
        parent.wait(10)
        wait_until(lambda: not _alive(child), 10, "the receiver to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_bad_arguments_are_refused_before_any_process_starts():
    with pytest.raises(ValueError, match="protocol"):
        ProcessTransport("mqtt://127.0.0.1:1", client_id="rx-bad", subscriptions=["a/#"], protocol="4")
    with pytest.raises(ValueError, match="share group"):
        ProcessTransport("mqtt://127.0.0.1:1", client_id="rx-bad", subscriptions=["a/#"], share_group="a/b")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 5), st.just(-1)), max_size=60))
def test_the_inbound_queue_is_a_fifo(ops):
    """``n >= 0``: put_many of n new items; ``-1``: get_nowait (Empty when there is none)."""
    q, model, k = InboundQueue(), [], 0
    for op in ops:
        if op >= 0:
            items = list(range(k, k + op))
            k += op
            q.put_many(items)
            model.extend(items)
        elif model:
            assert q.get_nowait() == model.pop(0)
        else:
            with pytest.raises(queue.Empty):
                q.get_nowait()
        assert q.qsize() == len(model)
    assert [q.get(timeout=0) for _ in model] == model
    with pytest.raises(queue.Empty):
        q.get(timeout=0)


def test_the_inbound_queue_waits_for_a_message_and_gives_up_after_its_timeout():
    q = InboundQueue()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    assert 0.04 <= time.monotonic() - t0 < 2
    threading.Timer(0.05, q.put_many, args=([7, 8],)).start()
    assert q.get(timeout=5) == 7 and q.get_nowait() == 8


def test_twin_run_reads_mqtt_in_a_child_process_unless_told_otherwise(bund_file, tmp_path):
    from ingest.transport.client import MqttTransport
    from twin.cli.main import build_parser
    from twin.cli.run import service_config
    from twin.live.service import ServiceConfig, inbound_transport

    def config(*more: str) -> ServiceConfig:
        argv = ["run", "--broker", "mqtt://127.0.0.1:1", "--grid", str(bund_file), "--state", str(tmp_path / "state")]
        return service_config(build_parser().parse_args([*argv, *more]))

    assert config().receiver == "process" and config("--receiver", "thread").receiver == "thread"
    assert isinstance(inbound_transport(config()), ProcessTransport)
    assert isinstance(inbound_transport(config("--receiver", "thread")), MqttTransport)
    with pytest.raises(ValueError, match="receiver"):
        inbound_transport(ServiceConfig("mqtt://127.0.0.1:1", bund_file, bund_file, tmp_path, receiver="fork"))
