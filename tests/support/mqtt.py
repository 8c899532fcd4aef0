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

  ``PrivateBroker(workdir, overrides, conf=...)`` renders another configuration file the same way, e.g.
  ``deploy/mosquitto-secure.conf`` with the test's certificate and password files as overrides.
* ``subscribed_event(transport)``: set when the broker acknowledges an ``MqttTransport``'s subscription.
* ``Flood``: publishes a file of messages (``write_messages``) at QoS 1 as fast as the broker takes them,
  from a child process speaking raw MQTT 3.1.1 over a socket (a window of unacknowledged messages, no
  per-message Python client overhead), so that the flood does not share the GIL of the twin under test.
  ``python -m tests.support.mqtt flood --port P --file F`` is that child.

Waiting for a condition: ``tests.support.waits.wait_until``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import paho.mqtt.client as mqtt

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


Override = str | tuple[str, ...]


def render_conf(port: int | Sequence[int], data_dir: Path, overrides: dict[str, Override] | None = None,
                conf: Path = DEPLOY_CONF) -> str:
    """``conf`` (default ``deploy/mosquitto.conf``) with its listeners on 127.0.0.1 (the i-th on ``port[i]``),
    the persistence location and any ``overrides`` replaced: a string replaces every line of that key, a
    tuple the i-th line with its i-th value (e.g. one password file per listener). Overrides the file does
    not set are appended (after the last listener)."""
    ports = [port] if isinstance(port, int) else list(port)
    overrides = dict(overrides or {})
    seen: dict[str, int] = {}
    out = []
    for line in Path(conf).read_text().splitlines():
        key = line.split(" ", 1)[0] if line and not line.startswith("#") else ""
        k = seen[key] = seen.get(key, -1) + 1
        if key == "listener":
            line = f"listener {ports[k]} 127.0.0.1"
        elif key == "persistence_location":
            line = f"persistence_location {data_dir}/"
        elif key in overrides:
            value = overrides[key]
            line = f"{key} {value[k] if isinstance(value, tuple) else value}"
        out.append(line)
    for key, value in overrides.items():
        if key not in seen:
            out += [f"{key} {v}" for v in (value if isinstance(value, tuple) else (value,))]
    return "\n".join(out) + "\n"


def listeners(conf: Path) -> int:
    """How many ``listener`` lines a configuration file has."""
    return sum(1 for line in Path(conf).read_text().splitlines() if line.startswith("listener "))


class PrivateBroker:
    """A Mosquitto process with deploy/mosquitto.conf limits (or another ``conf``) on a free loopback port."""

    def __init__(self, workdir: Path, overrides: dict[str, Override] | None = None, conf: Path = DEPLOY_CONF) -> None:
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "mosquitto-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports = [free_port() for _ in range(max(1, listeners(conf)))]
        """One port per listener of the file, in its order (``port`` is the first)."""
        self.port = self.ports[0]
        self.conf = self.workdir / "mosquitto.conf"
        overrides = dict(overrides or {})
        if os.geteuid() == 0:
            # Started as root, mosquitto switches to user "mosquitto", which cannot enter pytest's 0700
            # temp dirs: it would then fail to save its database ("Error: Permission denied") and lose
            # every session on restart. A throwaway test broker stays root instead.
            overrides.setdefault("user", "root")
        self.tls = "certfile" in overrides or any(
            line.startswith("certfile ") for line in Path(conf).read_text().splitlines())
        self.conf.write_text(render_conf(self.ports, self.data_dir, overrides, conf))
        self.log_path = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:<port>`` (``mqtts://`` when the configuration has a TLS listener)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> PrivateBroker:
        """Start and wait until it listens; raises ``RuntimeError`` otherwise."""
        log = open(self.log_path, "ab")  # noqa: SIM115 -- handed to the child
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            if all(broker_listening("127.0.0.1", p, 0.2) for p in self.ports):
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
def private_broker(workdir: Path, overrides: dict[str, Override] | None = None,
                   conf: Path = DEPLOY_CONF) -> Iterator[PrivateBroker]:
    """Context manager around ``PrivateBroker`` (start on enter, SIGTERM on exit)."""
    broker = PrivateBroker(workdir, overrides, conf)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def subscribed_event(transport) -> threading.Event:
    """An event set when the broker acknowledges a subscription of an ``MqttTransport`` (which subscribes
    in its ``on_connect`` and has no hook of its own for SUBACK): call before ``transport.start``."""
    if hasattr(transport, "subscribed"):  # ingest.transport.receiver.ProcessTransport: its child reports SUBACKs
        return transport.subscribed
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


# -- floods ------------------------------------------------------------------------------------------


def stop_tree(proc: subprocess.Popen, children: Iterable[int], timeout_s: float) -> int | None:
    """SIGTERM a supervisor and wait ``timeout_s`` [s]; if it has not ended, SIGKILL its ``children`` (pids: a killed
    supervisor leaves them, each in its own session) and then it. Returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait(10)
    return proc.returncode


def end_session(client_id: str, port: int = 1883) -> None:
    """Drop a persistent session left on a broker on 127.0.0.1 (a clean start that expires at once)."""
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_connect = lambda *a: done.set()
    client.connect("127.0.0.1", port, clean_start=True)
    client.loop_start()
    done.wait(10)
    client.disconnect()
    client.loop_stop()


def write_messages(path: Path, messages: Iterable[tuple[str, bytes]]) -> int:
    """Write ``(topic, payload)`` pairs for ``Flood`` (u16 topic length, topic, u32 payload length,
    payload); returns how many."""
    n = 0
    with open(path, "wb") as f:
        for topic, payload in messages:
            t = topic.encode()
            f.write(struct.pack(">H", len(t)) + t + struct.pack(">I", len(payload)) + payload)
            n += 1
    return n


def read_messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """The pairs ``write_messages`` wrote, in order."""
    data = Path(path).read_bytes()
    i = 0
    while i < len(data):
        (lt,) = struct.unpack_from(">H", data, i)
        topic = data[i + 2:i + 2 + lt].decode()
        i += 2 + lt
        (lp,) = struct.unpack_from(">I", data, i)
        yield topic, data[i + 4:i + 4 + lp]
        i += 4 + lp


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish_packet(topic: bytes, payload: bytes, mid: int) -> bytes:
    body = struct.pack(">H", len(topic)) + topic + struct.pack(">H", mid) + payload
    return b"\x32" + _remaining_length(len(body)) + body  # PUBLISH, QoS 1


def flood(port: int, messages: Iterable[tuple[str, bytes]], *, client_id: str = "flood", window: int = 1000,
          host: str = "127.0.0.1", timeout_s: float = 600.0) -> dict[str, float]:
    """Publish ``messages`` at QoS 1 over raw MQTT 3.1.1 with at most ``window`` unacknowledged; returns
    ``{"published": n, "seconds": s}`` once the broker has acknowledged every one (raises otherwise)."""
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x00" + struct.pack(">H", len(cid)) + cid  # clean session, no keepalive
    sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
    connack = sock.recv(4)
    if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"flood: the broker refused the connection: {connack!r}")
    sock.settimeout(None)
    cond = threading.Condition()
    state = {"acked": 0, "error": ""}

    def read_acks() -> None:
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError as exc:
                chunk, state["error"] = b"", str(exc)
            if not chunk:
                with cond:
                    state["error"] = state["error"] or "connection closed"
                    cond.notify_all()
                return
            buf += chunk
            whole = len(buf) // 4 * 4
            if any(buf[k] != 0x40 for k in range(0, whole, 4)):
                with cond:
                    state["error"] = "unexpected packet from the broker"
                    cond.notify_all()
                return
            with cond:
                state["acked"] += whole // 4
                cond.notify_all()
            buf = buf[whole:]

    reader = threading.Thread(target=read_acks, daemon=True)
    reader.start()
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    sent, mid, chunk = 0, 0, bytearray()

    def room(k: int) -> None:
        with cond:
            if not cond.wait_for(lambda: sent - state["acked"] <= window - k or state["error"],
                                 max(deadline - time.monotonic(), 0.0)):
                raise RuntimeError(f"flood: no acknowledgement within {timeout_s:g} s")
            if state["error"]:
                raise RuntimeError(f"flood: {state['error']}")

    batch = max(1, window // 4)
    pending = 0
    for topic, payload in messages:
        mid = mid % 65535 + 1
        chunk += _publish_packet(topic.encode(), payload, mid)
        pending += 1
        if pending == batch:
            room(pending)
            sock.sendall(chunk)
            sent += pending
            chunk, pending = bytearray(), 0
    if pending:
        room(pending)
        sock.sendall(chunk)
        sent += pending
    with cond:
        if not cond.wait_for(lambda: state["acked"] >= sent or state["error"], max(deadline - time.monotonic(), 0)):
            raise RuntimeError(f"flood: {sent - state['acked']} messages unacknowledged after {timeout_s:g} s")
        if state["error"] and state["acked"] < sent:
            raise RuntimeError(f"flood: {state['error']}")
    seconds = time.monotonic() - t0
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    return {"published": sent, "seconds": seconds}


class Flood:
    """``flood`` of a message file in a child process; ``wait`` returns its result."""

    def __init__(self, port: int, path: Path, client_id: str = "flood", window: int = 1000) -> None:
        cmd = [sys.executable, "-m", "tests.support.mqtt", "flood", "--port", str(port), "--file", str(path),
               "--client-id", client_id, "--window", str(window)]
        from tests.support.checkout import checkout_env

        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=checkout_env(),
                                     cwd=REPO)

    def wait(self, timeout_s: float) -> dict[str, float]:
        """Wait for the child to finish; its result (raises ``AssertionError`` if it failed or timed out)."""
        try:
            out, err = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the flood did not finish within {timeout_s:g} s") from None
        if self.proc.returncode != 0:
            raise AssertionError(f"the flood failed: {err.decode()[-2000:]}")
        return json.loads(out.decode().strip().splitlines()[-1])

    def kill(self) -> None:
        stop_process(self.proc, signal.SIGKILL, 10)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.mqtt")
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("flood", help="publish a message file (write_messages) at QoS 1 as fast as possible")
    f.add_argument("--port", type=int, required=True)
    f.add_argument("--file", required=True)
    f.add_argument("--client-id", default="flood")
    f.add_argument("--window", type=int, default=1000)
    args = parser.parse_args(argv)
    result = flood(args.port, read_messages(Path(args.file)), client_id=args.client_id, window=args.window)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
