"""Time from the first frame showing motion to the alarm's arrival at a real broker.

A synthetic camera plays in real time (10 fps); the figure first appears in the frame at 6.0 s. We take the time
that frame left the camera and the time the `event` start message reached a subscriber on a local mosquitto.
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
from bench.rows import emit  # noqa: E402
from common.clock import SystemClock  # noqa: E402
from drivers.camera.synthetic import WALK_START_S, SyntheticCamera  # noqa: E402
from station.monitor import Monitor  # noqa: E402
from tests.conftest import Broker  # noqa: E402


class StampedCamera(SyntheticCamera):
    """The synthetic camera, noting when each frame is handed to the pipeline."""

    handed_at: dict[int, float] = {}

    def frames(self):
        for frame in super().frames():
            self.handed_at[frame.index] = time.monotonic()
            yield frame


TARGET_P95_MS = 1000.0


#: the issue's floor for a p95: at least 20 real-time alarms
RUNS = 20


def main(runs: int = RUNS) -> None:
    latencies = []
    with tempfile.TemporaryDirectory() as work:
        broker = Broker(Path(work))
        broker.start()
        try:
            for run in range(runs):
                latencies.append(one_run(broker, Path(work) / f"run{run}", seed=7 + run))
        finally:
            broker.stop()
    print(f"alarm latency, first motion frame -> start event at the broker (10 fps, real time, {runs} runs):")
    print("  " + ", ".join(f"{value * 1000:.0f} ms" for value in latencies)
          + " (almost all of it is the detector's confirmation: the figure must be tracked over several frames "
            "and travel before it counts, then 3 motion frames raise the alarm)")
    millis = sorted(value * 1000 for value in latencies)
    p50 = statistics.median(millis)
    p95 = statistics.quantiles(millis, n=20, method="inclusive")[-1] if len(millis) > 1 else millis[0]
    emit(f"alarm latency, first motion -> broker ({runs} real-time alarms; median = p50)",
         f"p95 <= {TARGET_P95_MS:.0f} ms", millis, "ms", p95 <= TARGET_P95_MS,
         note=f"p50 {p50:.0f} ms, p95 {p95:.0f} ms",
         pi="about the same: confirmation frames at 10 fps, not CPU (while the loop keeps 10 fps)")


def one_run(broker: Broker, data_dir: Path, seed: int) -> float:
    """One alarm; `seed` gives each run its own sensor noise, so the runs are not one run repeated."""
    arrived = threading.Event()
    arrival = {}

    def on_line(line: str) -> None:
        if "EVENT start" in line and "kind=intrusion" in line and not arrived.is_set():
            arrival["t"] = time.monotonic()
            arrived.set()

    config = parse_config({"device_id": "pid-bench", "data_dir": str(data_dir), "broker": {"url": broker.url}})
    monitor = Monitor(broker.url, "pid-bench", None, printer=on_line)
    monitor.start()
    monitor.wait_for(lambda m: m.subscribed, timeout=10)
    clock = SystemClock()
    camera = StampedCamera(clock=clock, width=1280, height=720, fps=10.0, duration_s=WALK_START_S + 2.0,
                           realtime=True, seed=seed)
    summary = Agent(config, camera, clock, drain_timeout_s=10).run()
    alarm_frame = summary.events_published[0]["frame"]
    if not arrived.wait(10):
        raise SystemExit("the alarm never reached the broker")
    monitor.stop()
    first_motion_index = int(round(WALK_START_S * camera.fps))
    raised_at = camera.handed_at[alarm_frame]
    print(f"  run: alarm raised on frame {alarm_frame} (first motion frame {first_motion_index}); "
          f"raised frame -> broker {(arrival['t'] - raised_at) * 1000:.0f} ms")
    return arrival["t"] - camera.handed_at[first_motion_index]


if __name__ == "__main__":
    main()
