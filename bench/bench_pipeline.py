"""Whole-pipeline figures: replay throughput and peak memory with a 5 s pre-roll at 1280x720, 10 fps.

Renders the demo scene at 1280x720 into an MP4 once, then replays it --fast through the real Agent (decode,
detection, event engine, pre-roll ring, H.264 clip, outbox), offline.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import parse_config  # noqa: E402
from agent.pipeline import Agent  # noqa: E402
from common.clock import SystemClock  # noqa: E402
from drivers.camera.replay import ReplayCamera  # noqa: E402
from evaluation.demo import write_demo  # noqa: E402


def peak_rss_mib() -> float:
    """Peak resident memory of this process image (VmHWM: unlike ru_maxrss it does not carry over the
    parent's memory from before exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    """Render the input here, then measure in a fresh process so its peak RSS is the agent's alone."""
    with tempfile.TemporaryDirectory() as work:
        video = Path(work) / "demo720.mp4"
        write_demo(video, seconds=40.0, fps=10.0, width=1280, height=720)
        subprocess.run([sys.executable, __file__, str(video), str(Path(work) / "data")], check=True)


def measure(video: Path, data_dir: Path) -> None:
    baseline = peak_rss_mib()
    config = parse_config({"data_dir": str(data_dir), "recorder": {"pre_roll_s": 5.0, "post_roll_s": 10.0}})
    clock = SystemClock()
    camera = ReplayCamera(video, clock=clock, realtime=False, detect_width=320)
    ring_peak = [0]
    agent = Agent(config, camera, clock, upload=False,
                  on_frame=lambda frame: ring_peak.__setitem__(
                      0, max(ring_peak[0], agent.recorder.sink.buffered_bytes)))
    started = time.perf_counter()
    summary = agent.run()
    elapsed = time.perf_counter() - started
    print("replay pipeline (1280x720 H.264 MP4 @10 fps, 40 s, --fast, offline, detect 320 px):")
    print(f"  frames {summary.frames}, alarms {summary.alarms}, wall {elapsed:.2f} s "
          f"-> {summary.frames / elapsed:.1f} frames/s including decode, detection, pre-roll, clip encode, outbox")
    print(f"  peak RSS {peak_rss_mib():.1f} MiB (after imports {baseline:.1f} MiB); "
          f"pre-roll ring peak {ring_peak[0] / 2**20:.1f} MiB for 5 s of JPEG frames")


if __name__ == "__main__":
    if len(sys.argv) == 3:
        measure(Path(sys.argv[1]), Path(sys.argv[2]))
    else:
        main()
