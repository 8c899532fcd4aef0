"""MQTT transport: moves bytes between the broker and a bounded queue; it does not parse payloads."""

from ingest.transport.client import Backoff, InboundMessage, MqttTransport, TransportStats
from ingest.transport.url import BrokerURL, parse_broker_url

__all__ = ["Backoff", "BrokerURL", "InboundMessage", "MqttTransport", "TransportStats", "parse_broker_url"]
