"""``python -m ingest``: run the ingest path alone against a broker (a consumer for tests and operators).

Accepted records are appended to ``--sink`` as CSV lines ``device,t,quantity,ref,value`` (``t`` with
``repr`` precision); counters are written as JSON to ``--metrics-out`` every second and at exit.
SIGTERM or SIGINT stops it cleanly (the current group is committed and acknowledged first).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from ingest.batch import Batch
from ingest.pipeline import IngestConfig, Ingestor
from ingest.rawlog import RawLog
from ingest.registry import RegistryError, load_registry
from ingest.routing import subscriptions
from ingest.transport import MqttTransport
from ingest.validation import Limits

log = logging.getLogger("ingest")

DEFAULT_REGISTRY = Path(__file__).resolve().parent.parent / "data" / "bund" / "registry.geojson"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ingest", description=__doc__.splitlines()[0])
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt[s]://user:pass@host:port")
    p.add_argument("--client-id", default="citytwin-ingest", help="fixed client id (persistent session)")
    p.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    p.add_argument("--prefix", default="city/", help="topic prefix with trailing slash")
    p.add_argument("--log-dir", required=True, help="raw log directory")
    p.add_argument("--registry", default=str(DEFAULT_REGISTRY), help="device registry GeoJSON, or 'none'")
    p.add_argument("--receive-maximum", type=int, default=1000)
    p.add_argument("--max-bytes", type=int, default=64 * 1024)
    p.add_argument("--max-future-s", type=float, default=300.0)
    p.add_argument("--max-age-s", type=float, default=86_400.0)
    p.add_argument("--rate", type=float, default=20.0, help="messages/s per device, 0 = no limit")
    p.add_argument("--burst", type=float, default=200.0)
    p.add_argument("--replay", action="store_true", help="replay the raw log into the sink before consuming")
    p.add_argument("--sink", help="append accepted records here (CSV)")
    p.add_argument("--metrics-out", help="write counters here (JSON)")
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop after S seconds (0 = run until signalled)"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


class CsvSink:
    """Appends records as ``device,t,quantity,ref,value`` lines and flushes per batch."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream

    def __call__(self, batch: Batch) -> None:
        if self.stream is None:
            return
        lines = [
            f"{d},{t!r},{q},{r},{v!r}\n"
            for d, t, q, r, v in zip(
                batch.device.tolist(),
                batch.t.tolist(),
                batch.quantity.tolist(),
                batch.ref.tolist(),
                batch.value.tolist(),
                strict=True,
            )
        ]
        self.stream.write("".join(lines))
        self.stream.flush()


def _write_metrics(path: str | None, ingestor: Ingestor, transport: MqttTransport) -> None:
    if not path:
        return
    doc = ingestor.metrics.snapshot() | {"transport": transport.stats.__dict__.copy()}
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        registry = None if args.registry == "none" else load_registry(args.registry)
    except (OSError, RegistryError) as exc:
        print(f"error: registry: {exc}", file=sys.stderr)
        return 2
    limits = Limits(args.max_bytes, args.max_future_s, args.max_age_s, args.rate, args.burst)
    config = IngestConfig(prefix=args.prefix, limits=limits)
    transport = MqttTransport(
        args.broker,
        client_id=args.client_id,
        subscriptions=subscriptions(args.prefix),
        protocol=args.protocol,
        receive_maximum=args.receive_maximum,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sink_stream = open(args.sink, "a", encoding="utf-8") if args.sink else None  # noqa: SIM115
    with RawLog(args.log_dir) as raw:
        ingestor = Ingestor(transport, raw, registry, CsvSink(sink_stream), config)
        if args.replay:
            n = ingestor.replay()
            log.info("replayed %d logged messages", n)
        transport.start(wait_s=None)
        ingestor.start()
        t_end = time.monotonic() + args.duration if args.duration > 0 else None
        while not stop.wait(1.0):
            _write_metrics(args.metrics_out, ingestor, transport)
            if t_end is not None and time.monotonic() >= t_end:
                break
        ingestor.stop()
        transport.stop()
        _write_metrics(args.metrics_out, ingestor, transport)
    if sink_stream is not None:
        sink_stream.close()
    log.info("stopped: %s", json.dumps(ingestor.metrics.snapshot()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
