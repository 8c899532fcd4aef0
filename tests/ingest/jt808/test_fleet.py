"""10,000 JT/T 808 terminals over loopback through the gateway and a real Mosquitto, with no loss.

The gateway runs in this process (its own thread and event loop, `Gateway.run_in_thread`) and publishes to a private
Mosquitto (deploy/mosquitto.conf limits); the 10,000 terminals (`scenarios.feeds.jt808_fleet`, asyncio) run in a
child process, so that neither process holds 20,000 sockets (``ulimit -n``). They connect over 8 s, register,
authenticate, and report twice, 10 s apart. A subscriber on ``city/beidou/+`` decodes every message with the twin's
decoder (`ingest.decoders.jt808.jt808_records`) and counts the distinct (device, time): every report arrived, every
terminal got every answer, nothing was refused.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ingest.jt808.bridge import MqttBridge
from ingest.jt808.gateway import Gateway, GatewayConfig
from ingest.jt808.terminals import Terminals
from ingest.registry import registry_from_geojson
from scenarios.feeds.jt808_fleet import BeidouCounter, synthetic_members, synthetic_registry
from tests.support.checkout import checkout_env
from tests.support.mqtt import REPO, mosquitto_available, private_broker

pytestmark = [
    pytest.mark.slow,  # about 40 s: 8 s of connections, two rounds 10 s apart, the last answers
    pytest.mark.skipif(not mosquitto_available(), reason="needs the mosquitto binary"),
]

TERMINALS = 10_000
ROUNDS = 2
REPORT_S = 10.0
RAMP_S = 8.0
CHILD_TIMEOUT_S = 120.0


def run_fleet(port: int) -> dict:
    """The terminals in a child process; their counters."""
    cmd = [
        sys.executable,
        "-m",
        "scenarios.feeds.jt808_fleet",
        "--connect",
        f"127.0.0.1:{port}",
        "--terminals",
        str(TERMINALS),
        "--report-s",
        str(REPORT_S),
        "--rounds",
        str(ROUNDS),
        "--ramp-s",
        str(RAMP_S),
        "--duration",
        "60",
        "--drain",
        "20",
        "--reply-timeout",
        "10",
    ]
    proc = subprocess.run(cmd, capture_output=True, env=checkout_env(), cwd=REPO, timeout=CHILD_TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def test_ten_thousand_terminals_report_twice_with_no_loss(tmp_path):
    members = synthetic_members(TERMINALS)
    registry = registry_from_geojson(synthetic_registry(members))
    expected = TERMINALS * ROUNDS
    with private_broker(tmp_path) as broker:
        counter = BeidouCounter(broker.port)
        assert counter.subscribed.wait(10), "the counter's subscription was not acknowledged"
        bridge = MqttBridge(broker.url, client_id="fleet-gateway")
        gateway = Gateway(GatewayConfig(port=0, max_connections=TERMINALS + 100), Terminals(registry), bridge)
        port = gateway.run_in_thread()
        try:
            fleet = run_fleet(port)
            assert counter.wait_for(expected, 20), f"{len(counter.seen)} of {expected} reports reached the subscriber"
        finally:
            assert gateway.stop_thread(20)
            counter.stop()
    stats = gateway.stats
    assert fleet["terminals"] == TERMINALS
    assert fleet["scheduled"] == expected
    assert fleet["answered"] == expected, fleet
    assert fleet["complete"] == TERMINALS  # every terminal got every answer
    assert fleet["connect_failures"] == 0 and fleet["dropped"] == 0 and fleet["refused"] == 0
    assert fleet["registrations"] == TERMINALS and fleet["connections"] == TERMINALS
    assert len(counter.seen) == expected  # no loss: every (device, time) once at least
    assert {d for d, _ in counter.seen} == {d for d, _ in members}
    assert counter.undecodable == 0
    assert stats.registrations == TERMINALS and stats.auth_ok == TERMINALS
    assert stats.published >= expected and stats.refused == {} and stats.dead_letters == 0
    assert counter.messages == stats.published  # resent reports are published again, never lost
