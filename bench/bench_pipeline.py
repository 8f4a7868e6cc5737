"""Whole-pipeline figures: replay throughput and peak memory with a 5 s pre-roll at 1280x720, 10 fps.

Runs the real Agent (detection, event engine, pre-roll ring, H.264 clip, outbox) offline on the synthetic scene.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.clock import SystemClock  # noqa: E402
from agent.config import parse_config  # noqa: E402
from agent.pipeline import Agent  # noqa: E402
from drivers.camera.synthetic import SyntheticCamera  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    baseline = peak_rss_mib()
    with tempfile.TemporaryDirectory() as data_dir:
        config = parse_config({"data_dir": data_dir, "recorder": {"pre_roll_s": 5.0, "post_roll_s": 10.0}})
        camera = SyntheticCamera(width=1280, height=720, fps=10.0, duration_s=40.0, detect_width=320)
        ring_peak = [0]
        agent = Agent(config, camera, SystemClock(), upload=False,
                      on_frame=lambda frame: ring_peak.__setitem__(0, max(ring_peak[0], agent.recorder.pre_roll.bytes)))
        started = time.perf_counter()
        summary = agent.run()
        elapsed = time.perf_counter() - started
    print("pipeline (synthetic 1280x720 @10 fps, 40 s, offline, detect 320 px):")
    print(f"  frames {summary.frames}, alarms {summary.alarms}, wall {elapsed:.2f} s "
          f"-> {summary.frames / elapsed:.1f} frames/s including scene rendering, recording and outbox")
    print(f"  peak RSS {peak_rss_mib():.1f} MiB (after imports {baseline:.1f} MiB); "
          f"pre-roll ring peak {ring_peak[0] / 2**20:.1f} MiB for 5 s of JPEG frames")


if __name__ == "__main__":
    main()
