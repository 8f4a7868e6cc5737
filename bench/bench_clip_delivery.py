"""Clip delivery time: from the alarm's end (the frame loop closes the clip) until the clip's last chunk is at a
subscriber on a real mosquitto on loopback, reassembled and its SHA-256 verified.

The synthetic camera plays the demo in real time at 1280x720 10 fps (as a live unit, so the clip's encoder keeps
up as it does on a unit); the figure walks 6-11 s, so with the default 5 s pre-roll and 10 s post-roll the clip
holds about 20 s. The start is the moment recorder.finish() is called (it waits for the encoder's last frames,
fsyncs and fingerprints the file), the end the subscriber's MEDIA ... VERIFIED line for clip.mp4.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import parse_config  # noqa: E402
from agent.pipeline import Agent  # noqa: E402
from agent.storage.clip_sink import CLIP_NAME  # noqa: E402
from bench.rows import emit  # noqa: E402
from common.clock import SystemClock  # noqa: E402
from drivers.camera.synthetic import WALK_DURATION_S, WALK_START_S, SyntheticCamera  # noqa: E402
from station.monitor import Monitor  # noqa: E402
from tests.conftest import Broker  # noqa: E402

REPS = 5
TARGET_S = 5.0
#: the uplink a unit on 4G can count on (a weak cell's sustained upload); the row's Pi column adds the transfer
UPLINK_4G_BITS_S = 2e6
POST_ROLL_S = 10.0
RUN_S = WALK_START_S + WALK_DURATION_S + POST_ROLL_S + 4.0  # the alarm ends and its clip closes before the source


class ClosingAgent(Agent):
    """The Agent, noting when the frame loop starts closing the alarm's clip and how long finish() takes."""

    closing: list[tuple[float, float]]

    def _build_unit(self) -> None:
        super()._build_unit()
        self.closing = []
        finish = self.recorder.finish

        def timed():
            began = time.monotonic()
            media = finish()
            self.closing.append((began, time.monotonic() - began))
            return media

        self.recorder.finish = timed


def one_run(broker: Broker, data_dir: Path) -> tuple[float, float, int]:
    """(delivery seconds, finish() seconds, clip bytes) for one real-time alarm."""
    arrived = threading.Event()
    arrival = {}

    def on_line(line: str) -> None:
        if " MEDIA " in line and f"/{CLIP_NAME} " in line and "VERIFIED" in line:
            arrival["t"] = time.monotonic()
            arrival["bytes"] = int(line.split(f"/{CLIP_NAME} ")[1].split(" B")[0])
            arrived.set()

    config = parse_config({"device_id": "pid-bench", "data_dir": str(data_dir), "broker": {"url": broker.url},
                           "recorder": {"post_roll_s": POST_ROLL_S}})
    monitor = Monitor(broker.url, "pid-bench", None, printer=on_line)
    monitor.start()
    try:
        monitor.wait_for(lambda m: m.subscribed, timeout=10)
        clock = SystemClock()
        camera = SyntheticCamera(clock=clock, width=1280, height=720, fps=10.0, duration_s=RUN_S, realtime=True)
        agent = ClosingAgent(config, camera, clock, drain_timeout_s=30)
        summary = agent.run()
        if not agent.closing:
            raise SystemExit("no clip was closed: the alarm never ended")
        if not arrived.wait(30):
            raise SystemExit("the clip never reached the subscriber")
    finally:
        monitor.stop()
    began, finish_s = agent.closing[0]
    delivery = arrival["t"] - began
    seconds = next((e["clip"].get("duration_s") for e in summary.events_published if e.get("clip")), None) or 0.0
    print(f"  run: finish() {finish_s * 1000:.0f} ms, clip {seconds:.1f} s {arrival['bytes'] / 1e6:.2f} MB at the "
          f"subscriber {delivery * 1000:.0f} ms after the alarm's end")
    return delivery, finish_s, arrival["bytes"], seconds


def main() -> None:
    results = []
    with tempfile.TemporaryDirectory() as work:
        broker = Broker(Path(work))
        broker.start()
        try:
            for run in range(REPS):
                results.append(one_run(broker, Path(work) / f"run{run}"))
        finally:
            broker.stop()
    delivery = [r[0] * 1000 for r in results]
    finish_ms = statistics.median(r[1] for r in results) * 1000
    size = statistics.median(r[2] for r in results)
    seconds = statistics.median(r[3] for r in results)
    transfer = size * 8 / UPLINK_4G_BITS_S
    emit(f"clip delivery, alarm end -> last chunk verified at a subscriber (720p clip, loopback, {REPS} "
         "real-time alarms)", f"<= {TARGET_S * 1000:.0f} ms", delivery, "ms",
         statistics.median(delivery) <= TARGET_S * 1000,
         note=f"clip {seconds:.1f} s, {size / 1e6:.2f} MB; finish() {finish_ms:.0f} ms of it (medians)",
         pi=f"+{transfer:.1f} s on 4G at an assumed {UPLINK_4G_BITS_S / 1e6:.0f} Mbit/s upload; "
            "finish() and SHA-256 x6-12")


if __name__ == "__main__":
    main()
