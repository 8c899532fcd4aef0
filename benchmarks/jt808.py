"""The JT/T 808 gateway under a fleet: 10,000 terminals over loopback reporting every 10 s.

Three processes and a broker, all on this machine: the gateway (`ingest.jt808.gateway.Gateway`, in a process of its
own so that its CPU and memory are its alone), the terminals (`scenarios.feeds.jt808_fleet`, asyncio, one process),
a private Mosquitto (deploy/mosquitto.conf), and this process subscribing to ``city/beidou/+`` and decoding every
report with the twin's decoder (`ingest.decoders.jt808.jt808_records`).

The terminals connect over ``--ramp`` seconds, register and authenticate, then each reports every ``--report-s``
seconds for ``--duration`` seconds; the run ends when every report is answered (or ``--drain`` seconds after the
end). Measured:

* **gateway CPU**: user + system seconds of the gateway process from /proc over the run (terminals connecting,
  reporting, the last answers), as a share of one core and per 1000 reports;
* **gateway memory**: resident set before the terminals come, and its peak (VmHWM) [MiB];
* **reports/s** offered: reports handed to the terminals over ``--duration``; **frames/s**: every frame the gateway
  parsed (registration, authentication, reports) over the whole run;
* **answer latency** p50 / p99, measured at the terminals (so it includes the load generator's own delays on the
  same cores): a report handed to its terminal to the gateway's 0x8001 (which comes only after the
  broker's PUBACK) [ms], over the whole run and once every terminal is connected (after the ramp and one report
  interval: the connection storm is over);
* for comparison, the CPU of the terminals' process and of Mosquitto over the same run; the **ratio** of the gateway's
  CPU to the terminals' process's is the figure to compare across machines (the baseline: the same fleet's mirror
  image -- an asyncio process building the same frames and reading the answers -- measured in the same run);
* **loss**: reports handed to terminals minus distinct (device, time) the subscriber decoded (must be 0).

    python benchmarks/jt808.py                          # 10,000 terminals, every 10 s, 60 s
    python benchmarks/jt808.py --terminals 2000 --duration 30 --json out.json

Linux only (/proc). Needs ``mosquitto``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# The project's modules are imported inside the functions: the gateway's process (spawned: it imports this file
# again) then holds only what the gateway needs, and its memory is the gateway's.

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far [s] (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_mib(pid: int) -> dict[str, float]:
    """Resident set now (VmRSS) and at its peak (VmHWM) [MiB]."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def gateway_process(registry_path: str, broker_url: str, connections: int, conn) -> None:
    """The gateway in a process of its own: sends its port, runs until told to stop, sends its counters."""
    from ingest.jt808.bridge import MqttBridge
    from ingest.jt808.gateway import Gateway, GatewayConfig
    from ingest.jt808.terminals import Terminals
    from ingest.registry import load_registry

    gateway = Gateway(GatewayConfig(port=0, max_connections=connections),
                      Terminals(load_registry(registry_path)), MqttBridge(broker_url, client_id="bench-gateway"))
    conn.send(gateway.run_in_thread())
    conn.recv()
    gateway.stop_thread(30)
    conn.send(gateway.stats.as_dict())


def run_fleet(args: argparse.Namespace, port: int) -> dict:
    """The terminals in a child process; their counters (raises ``RuntimeError`` if it failed)."""
    from tests.support.checkout import checkout_env

    cmd = [sys.executable, "-m", "scenarios.feeds.jt808_fleet", "--connect", f"127.0.0.1:{port}",
           "--terminals", str(args.terminals), "--report-s", str(args.report_s), "--duration", str(args.duration),
           "--ramp-s", str(args.ramp), "--drain", str(args.drain), "--version", str(args.version)]
    proc = subprocess.run(cmd, capture_output=True, env=checkout_env(), cwd=REPO, check=False,
                          timeout=args.duration + args.drain + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"the terminals failed: {proc.stderr.decode()[-3000:]}")
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def measure(args: argparse.Namespace, workdir: Path) -> dict:
    """One run (see the module docstring); the figures."""
    from scenarios.feeds.jt808_fleet import BeidouCounter, synthetic_members, synthetic_registry
    from tests.support.mqtt import PrivateBroker

    registry = workdir / "registry.geojson"
    members = synthetic_members(args.terminals)
    registry.write_text(json.dumps(synthetic_registry(members)))
    broker = PrivateBroker(workdir).start()
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    gateway = ctx.Process(target=gateway_process, args=(str(registry), broker.url, args.terminals + 100, there))
    counter = BeidouCounter(broker.port)
    try:
        if not counter.subscribed.wait(10):
            raise RuntimeError("the subscription was not acknowledged")
        gateway.start()
        if not here.poll(60):
            raise RuntimeError("the gateway did not start")
        port = here.recv()
        rss0 = memory_mib(gateway.pid)["VmRSS"]
        cpu0, broker0, t0 = cpu_seconds(gateway.pid), cpu_seconds(broker.proc.pid), time.monotonic()
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        fleet = run_fleet(args, port)
        wall, cpu = time.monotonic() - t0, cpu_seconds(gateway.pid) - cpu0
        broker_cpu = cpu_seconds(broker.proc.pid) - broker0
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        fleet_cpu = children.ru_utime + children.ru_stime - children0.ru_utime - children0.ru_stime
        counter.wait_for(fleet["answered"], 20)
        memory = memory_mib(gateway.pid)
        here.send("stop")
        stats = here.recv() if here.poll(60) else {}
    finally:
        counter.stop()
        gateway.join(60)
        broker.stop()
    reports = stats.get("published", 0)
    window = max(args.duration, 1e-9)
    return {
        "terminals": args.terminals, "report_s": args.report_s, "duration_s": args.duration,
        "wall_s": round(wall, 1), "reports_handed": fleet["scheduled"], "answered": fleet["answered"],
        "resent": fleet["resent"], "connect_failures": fleet["connect_failures"],
        "published": reports, "distinct_received": len(counter.seen), "loss": fleet["scheduled"] - len(counter.seen),
        "reports_per_s": round(fleet["scheduled"] / window, 1), "frames_per_s": round(stats.get("frames", 0) / wall, 1),
        "gateway_cpu_s": round(cpu, 2), "gateway_cpu_share": round(cpu / wall, 3),
        "gateway_cpu_ms_per_1000_reports": round(1e6 * cpu / max(reports, 1), 1),
        "gateway_rss_idle_mib": round(rss0, 1), "gateway_rss_peak_mib": round(memory["VmHWM"], 1),
        "latency_p50_ms": round(1000 * fleet["latency_p50_s"], 1),
        "latency_p99_ms": round(1000 * fleet["latency_p99_s"], 1),
        "steady_p50_ms": round(1000 * fleet["steady_p50_s"], 1),
        "steady_p99_ms": round(1000 * fleet["steady_p99_s"], 1),
        "terminals_cpu_s": round(fleet_cpu, 2), "mosquitto_cpu_s": round(broker_cpu, 2),
        "refused": stats.get("refused", {}), "dead_letters": stats.get("dead_letters", 0),
    }


def table(r: dict) -> str:
    """The figures as a small Markdown table."""
    rows = [
        ("terminals, report interval", f"{r['terminals']:,}, every {r['report_s']:g} s for {r['duration_s']:g} s"),
        ("reports handed / answered / distinct received", f"{r['reports_handed']:,} / {r['answered']:,} / "
                                                          f"{r['distinct_received']:,}"),
        ("loss", f"{r['loss']}"),
        ("reports/s (offered), frames/s (whole run)", f"{r['reports_per_s']:,}, {r['frames_per_s']:,}"),
        ("answer latency p50 / p99, whole run", f"{r['latency_p50_ms']} ms / {r['latency_p99_ms']} ms"),
        ("answer latency p50 / p99, all connected", f"{r['steady_p50_ms']} ms / {r['steady_p99_ms']} ms"),
        ("gateway CPU (user+sys)", f"{r['gateway_cpu_s']} s in {r['wall_s']} s = {100 * r['gateway_cpu_share']:.1f} % "
                                   f"of a core; {r['gateway_cpu_ms_per_1000_reports']} ms per 1000 reports"),
        ("gateway memory (RSS idle / peak)", f"{r['gateway_rss_idle_mib']} MiB / {r['gateway_rss_peak_mib']} MiB"),
        ("for comparison, CPU of the terminals' process / Mosquitto", f"{r['terminals_cpu_s']} s / "
                                                                       f"{r['mosquitto_cpu_s']} s"),
        ("gateway CPU / terminals' process CPU (same run)",
         f"{r['gateway_cpu_s'] / max(r['terminals_cpu_s'], 1e-9):.2f}×"),
        ("resent, connect failures, refused", f"{r['resent']}, {r['connect_failures']}, {r['refused'] or 'none'}"),
    ]
    return "\n".join(["| | |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--terminals", type=int, default=10_000)
    p.add_argument("--report-s", type=float, default=10.0, help="report interval [s] (default 10)")
    p.add_argument("--duration", type=float, default=60.0, help="reporting time [s] (default 60)")
    p.add_argument("--ramp", type=float, default=10.0, help="seconds over which the terminals connect (default 10)")
    p.add_argument("--drain", type=float, default=30.0, help="seconds to wait for the last answers (default 30)")
    p.add_argument("--version", type=int, choices=(2013, 2019), default=2013)
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jt808-bench-") as tmp:
        result = measure(args, Path(tmp))
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["loss"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
