"""A paho-mqtt 2 client for a broker URL, as the simulator and the demo's watcher need it."""

from __future__ import annotations

from typing import Any

from ingest.transport.url import BrokerURL, parse_broker_url


def paho_client(url: str, *, protocol: str, client_id: str, username: str | None = None) -> tuple[Any, BrokerURL]:
    """(client, parsed URL): VERSION2 callbacks, clean session, the URL's user (or ``username``) and TLS.

    ``protocol`` is "5" or "3.1.1"; amqtt (MQTT 3.1.1) needs a username to queue for a client, so
    ``username`` is used when the URL has none."""
    import paho.mqtt.client as mqtt

    if protocol not in ("5", "3.1.1"):
        raise ValueError(f"protocol {protocol!r} must be 5 or 3.1.1")
    broker = parse_broker_url(url)
    version = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
    kwargs: dict[str, Any] = {"client_id": client_id, "protocol": version}
    if version == mqtt.MQTTv311:
        kwargs["clean_session"] = True
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
    if broker.username or username:
        client.username_pw_set(broker.username or username, broker.password)
    if broker.tls:
        client.tls_set()
    return client, broker
