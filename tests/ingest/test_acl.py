"""deploy/acl.example stops a device from writing another device's topic (MQTT 5 PUBACK reason 0x87)."""

from __future__ import annotations

import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

from tests.support.mqtt import REPO, PrivateBroker, mosquitto_available


@pytest.fixture
def secured_broker(tmp_path):
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed")
    passwd = tmp_path / "passwd"
    for i, (user, pw) in enumerate([("crowd-bund-01", "pw1"), ("unit-police-01", "pw2")]):
        flags = ["-c"] if i == 0 else []
        subprocess.run(["mosquitto_passwd", *flags, "-b", str(passwd), user, pw], check=True)
    b = PrivateBroker(tmp_path / "b", {"allow_anonymous": "false", "password_file": str(passwd),
                                       "acl_file": str(REPO / "deploy" / "acl.example")})
    b.start()
    yield b
    b.stop()


def puback_reason(port, user, pw, topic):
    done, box = threading.Event(), {}

    def on_publish(c, u, mid, reason, props):
        box["rc"] = reason.value
        done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"acl-{user}", protocol=mqtt.MQTTv5)
    c.username_pw_set(user, pw)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, b"[]", qos=1)
    assert done.wait(10)
    c.disconnect()
    c.loop_stop()
    return box["rc"]


@pytest.mark.skipif(subprocess.run(["which", "mosquitto_passwd"], capture_output=True).returncode,
                    reason="mosquitto_passwd missing")
def test_devices_write_only_their_own_topics(secured_broker):
    port = secured_broker.port
    ok = (0, 16)  # 16: accepted, no matching subscribers
    assert puback_reason(port, "crowd-bund-01", "pw1", "city/sensors/crowd/crowd-bund-01") in ok
    assert puback_reason(port, "crowd-bund-01", "pw1", "city/sensors/crowd/crowd-bund-02") == 135
    assert puback_reason(port, "unit-police-01", "pw2", "city/units/unit-police-01/ack") in ok
    assert puback_reason(port, "unit-police-01", "pw2", "city/units/unit-police-02/ack") == 135
