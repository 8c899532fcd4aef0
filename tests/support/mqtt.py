"""Broker helpers shared by tests and benchmarks.

* ``broker_listening(host, port)``: is something accepting TCP connections there (e.g. the CI Mosquitto
  on 127.0.0.1:1883)?
* ``PrivateBroker``: a Mosquitto started from ``deploy/mosquitto.conf`` (zero-loss limits, persistence)
  with its own free port and data directory; ``start``/``stop`` (SIGTERM, so it saves its database)/
  ``restart``. ``private_broker(tmp_path)`` is the function a fixture wraps::

      @pytest.fixture
      def broker(tmp_path):
          with private_broker(tmp_path) as b:
              yield b            # b.url == "mqtt://127.0.0.1:<port>"

* ``subscribed_event(transport)``: set when the broker acknowledges an ``MqttTransport``'s subscription.

Waiting for a condition: ``tests.support.waits.wait_until``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY_CONF = REPO / "deploy" / "mosquitto.conf"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def broker_listening(host: str = "127.0.0.1", port: int = 1883, timeout_s: float = 0.5) -> bool:
    """Whether ``host:port`` accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def mosquitto_available() -> bool:
    """Whether the mosquitto binary is installed."""
    return os.path.exists(MOSQUITTO)


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render_conf(port: int, data_dir: Path, overrides: dict[str, str] | None = None) -> str:
    """``deploy/mosquitto.conf`` with the listener, persistence location and any ``overrides`` replaced."""
    overrides = dict(overrides or {})
    out = []
    for line in DEPLOY_CONF.read_text().splitlines():
        key = line.split(" ", 1)[0] if line and not line.startswith("#") else ""
        if key == "listener":
            line = f"listener {port} 127.0.0.1"
        elif key == "persistence_location":
            line = f"persistence_location {data_dir}/"
        elif key in overrides:
            line = f"{key} {overrides.pop(key)}"
        out.append(line)
    out += [f"{k} {v}" for k, v in overrides.items()]
    return "\n".join(out) + "\n"


class PrivateBroker:
    """A Mosquitto process with deploy/mosquitto.conf limits on a free loopback port."""

    def __init__(self, workdir: Path, overrides: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "mosquitto-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.workdir / "mosquitto.conf"
        overrides = dict(overrides or {})
        if os.geteuid() == 0:
            # Started as root, mosquitto switches to user "mosquitto", which cannot enter pytest's 0700
            # temp dirs: it would then fail to save its database ("Error: Permission denied") and lose
            # every session on restart. A throwaway test broker stays root instead.
            overrides.setdefault("user", "root")
        self.conf.write_text(render_conf(self.port, self.data_dir, overrides))
        self.log_path = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:<port>``."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> PrivateBroker:
        """Start and wait until it listens; raises ``RuntimeError`` otherwise."""
        log = open(self.log_path, "ab")  # noqa: SIM115 -- handed to the child
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            if broker_listening("127.0.0.1", self.port, 0.2):
                return self
            time.sleep(0.05)  # polling pace until it listens (bounded by the deadline above)
        raise RuntimeError(f"mosquitto did not start listening within {timeout_s:g} s")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (the broker writes its persistence database) and wait."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout_s)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` [s], start on the same port with the same data."""
        self.stop()
        time.sleep(down_s)  # deliberate: the outage lasts down_s while clients go on publishing
        self.start()

    def __enter__(self) -> PrivateBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def private_broker(workdir: Path, overrides: dict[str, str] | None = None) -> Iterator[PrivateBroker]:
    """Context manager around ``PrivateBroker`` (start on enter, SIGTERM on exit)."""
    broker = PrivateBroker(workdir, overrides)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def subscribed_event(transport) -> threading.Event:
    """An event set when the broker acknowledges a subscription of an ``MqttTransport`` (which subscribes
    in its ``on_connect`` and has no hook of its own for SUBACK): call before ``transport.start``."""
    event = threading.Event()
    client = transport._client  # the paho client inside; the transport leaves on_subscribe unset
    previous = client.on_subscribe

    def on_subscribe(*args) -> None:
        if previous is not None:
            previous(*args)
        event.set()

    client.on_subscribe = on_subscribe
    return event


def stop_process(proc: subprocess.Popen, sig: int, timeout_s: float) -> int | None:
    """Send ``sig`` to a running process and wait ``timeout_s``; kill it if it has not ended by then."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode
