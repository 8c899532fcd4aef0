"""Bad messages mixed into a feed so the dead-letter path is exercised.

Four kinds, in turn at random: an NMEA sentence with a broken checksum (``bad_checksum``), a well-formed
report from a device not in the registry (``ghost-NN``: rejected later as ``unknown_device``), garbage
bytes on a sensor topic (``bad_syntax``), and an out-of-range SenML value (``out_of_range``).
"""

from __future__ import annotations

import numpy as np

from ingest.batch import Batch
from ingest.decoders.nmea import encode_nmea
from ingest.decoders.senml import encode_senml

KINDS = ("checksum", "unknown_device", "garbage", "out_of_range")
OUT_OF_RANGE = {"rain": ("rain", 900.0), "water": ("depth", -1.5), "crowd": ("count", -5.0),
                "traffic": ("speed", 400.0)}
"""A value outside the decoder's plausible range, by sensor kind."""


class BadMessages:
    """Makes bad messages so that they are about ``share`` of all messages."""

    def __init__(self, rng: np.random.Generator, share: float, sensors: dict[str, list[str]],
                 vehicles: list[str]) -> None:
        if not 0.0 <= share < 1.0:
            raise ValueError(f"bad share {share} must be in [0, 1)")
        self.rng, self.share = rng, share
        self.sensors = {k: v for k, v in sensors.items() if v}
        self.vehicles = vehicles
        self.counts = dict.fromkeys(KINDS, 0)

    def for_good(self, n_good: int, t: float, prefix: str) -> list[tuple[str, bytes]]:
        """Bad messages to go with ``n_good`` good ones (Binomial, so bad / total ~ ``share``)."""
        if self.share <= 0 or n_good == 0:
            return []
        n = int(self.rng.binomial(n_good, self.share / (1.0 - self.share)))
        return [self.make(KINDS[int(self.rng.integers(len(KINDS)))], t, prefix) for _ in range(n)]

    def make(self, kind: str, t: float, prefix: str) -> tuple[str, bytes]:
        """One bad message of ``kind`` (one of ``KINDS``)."""
        self.counts[kind] += 1
        lon, lat = 121.4855 + float(self.rng.uniform(-0.002, 0.002)), 31.2405 + float(self.rng.uniform(-0.002, 0.002))
        if kind == "checksum":
            dev = self.vehicles[int(self.rng.integers(len(self.vehicles)))] if self.vehicles else "veh-001"
            nmea = encode_nmea(Batch.build(1, device=dev, t=round(t, 2), quantity="position", lon=lon, lat=lat,
                                           speed_kmh=20.0, course_deg=90.0, fix=1), talker="BD").decode()
            star = nmea.index("*")
            good = int(nmea[star + 1 : star + 3], 16)
            broken = nmea[: star + 1] + f"{good ^ 0x5A:02X}" + nmea[star + 3 :]
            return f"{prefix}beidou/{dev}", broken.encode()
        if kind == "unknown_device":
            dev = f"ghost-{int(self.rng.integers(1, 100)):02d}"
            b = Batch.build(1, device=dev, t=round(t, 3), quantity="rain", value=1.0)
            return f"{prefix}sensors/rain/{dev}", encode_senml(b)
        sensor_kind = sorted(self.sensors)[int(self.rng.integers(len(self.sensors)))]
        ids = self.sensors[sensor_kind]
        dev = ids[int(self.rng.integers(len(ids)))]
        topic = f"{prefix}sensors/{sensor_kind}/{dev}"
        if kind == "garbage":
            return topic, b"\xff\xfe" + self.rng.bytes(int(self.rng.integers(4, 40)))
        name, value = OUT_OF_RANGE[sensor_kind]
        return topic, encode_senml(Batch.build(1, device=dev, t=round(t, 3), quantity=name, value=value))
