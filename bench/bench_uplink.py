"""Outbox and uplink throughput through a real mosquitto on loopback: prints numbers, asserts nothing.

Run: .venv/bin/python bench/bench_uplink.py [--events N] [--media-mb M] [--chunk-kb K]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import BrokerSettings  # noqa: E402
from agent.storage.outbox import Outbox  # noqa: E402
from agent.uplink.client import Uplink  # noqa: E402
from agent.uplink.messages import AlarmStart  # noqa: E402
from common.clock import SystemClock  # noqa: E402
from station.monitor import Monitor  # noqa: E402
from tests.conftest import Broker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--media-mb", type=float, default=8.0)
    parser.add_argument("--chunk-kb", type=int, default=256)
    parser.add_argument("--inflight", type=int, default=16)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-uplink-"))
    broker = Broker(folder)
    broker.start()
    url = broker.url
    try:
        box = Outbox(folder / "agent", 4 * 1024**3, SystemClock())
        t0 = time.perf_counter()
        for n in range(args.events):
            # a real alarm start as the agent builds it: the monitor refuses what its message model refuses
            start = AlarmStart(device_id="bench", site_ref="bench", event_id=f"e{n}", seq=box.next_seq(),
                               ts="2026-01-01T00:00:00Z", frame=n, score=1.0, boxes=[[1, 2, 3, 4]] * 4,
                               image_size=[1280, 720], zone=None, confirmed_by=["video"])
            box.put_message("event", start.wire(), "event")
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
        arrived = (len(monitor.events), len(monitor.rejected), sorted(monitor.media))
        uplink.stop()
        monitor.stop()
        box.close()
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)

    print(f"outbox put_message (commit+fsync each): {args.events / t_put:8.0f} events/s "
          f"({t_put / args.events * 1000:.2f} ms each)")
    print(f"outbox put_media {args.media_mb:.0f} MB (sha256 + {rows - args.events} chunk rows): {t_media:.3f} s")
    print(f"uplink drain of {rows} rows (inflight={args.inflight}, chunk={args.chunk_kb} KiB): {t_drain:.2f} s "
          f"-> {rows / t_drain:.0f} msg/s, {size / t_drain / 1024**2:.1f} MB/s; drained={drained}")
    print(f"monitor received all and verified: {verified} after {t_recv:.2f} s (events, rejected, media: {arrived})")


if __name__ == "__main__":
    main()
