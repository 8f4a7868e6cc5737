"""Outbox and uplink throughput through a real mosquitto on loopback: prints numbers, asserts nothing.

Run: .venv/bin/python bench/bench_uplink.py [--events N] [--media-mb M] [--chunk-kb K]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from agent.clock import SystemClock
from agent.config import BrokerSettings
from agent.monitor import Monitor
from agent.outbox import Outbox
from agent.uplink import Uplink

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def start_broker(folder: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf = folder / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false", "max_queued_messages 0"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"mqtt://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("mosquitto did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--media-mb", type=float, default=8.0)
    parser.add_argument("--chunk-kb", type=int, default=256)
    parser.add_argument("--inflight", type=int, default=16)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-uplink-"))
    proc, url = start_broker(folder)
    try:
        box = Outbox(folder / "agent", 4 * 1024**3, SystemClock())
        t0 = time.perf_counter()
        for n in range(args.events):
            box.put_message("event", {"event_id": f"e{n}", "seq": box.next_seq(), "phase": "start",
                                      "boxes": [[1, 2, 3, 4]] * 4}, "event")
        t_put = time.perf_counter() - t0
        clip = box.media_dir / "big" / "clip.mp4"
        clip.parent.mkdir(parents=True)
        size = int(args.media_mb * 1024 * 1024)
        clip.write_bytes(os.urandom(size))
        t0 = time.perf_counter()
        box.put_media("big", "clip.mp4", clip, "video/mp4", args.chunk_kb * 1024)
        t_media = time.perf_counter() - t0
        rows = box.depth()

        monitor = Monitor(url, "bench", None, printer=lambda line: None)
        monitor.start()
        monitor.wait_for(lambda m: m.subscribed, 10)
        uplink = Uplink(BrokerSettings(url=url, inflight=args.inflight, reconnect_min_s=0.1), "pids/bench", "bench",
                        box, SystemClock(), "bench")
        t0 = time.perf_counter()
        uplink.start()
        drained = uplink.wait_drained(300)
        t_drain = time.perf_counter() - t0
        ok = monitor.wait_for(lambda m: len(m.events) == args.events and ("big", "clip.mp4") in m.media, 60)
        t_recv = time.perf_counter() - t0
        verified = ok and monitor.media[("big", "clip.mp4")].verified
        uplink.stop()
        monitor.stop()
        box.close()
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)

    print(f"outbox put_message (commit+fsync each): {args.events / t_put:8.0f} events/s "
          f"({t_put / args.events * 1000:.2f} ms each)")
    print(f"outbox put_media {args.media_mb:.0f} MB (sha256 + {rows - args.events} chunk rows): {t_media:.3f} s")
    print(f"uplink drain of {rows} rows (inflight={args.inflight}, chunk={args.chunk_kb} KiB): {t_drain:.2f} s "
          f"-> {rows / t_drain:.0f} msg/s, {size / t_drain / 1024**2:.1f} MB/s; drained={drained}")
    print(f"monitor received all and verified: {verified} after {t_recv:.2f} s")


if __name__ == "__main__":
    main()
