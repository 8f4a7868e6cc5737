"""Whole-pipeline figures with a 10 s pre-roll at 1280x720 10 fps, alarms included: replay throughput, peak RSS,
the frame loop's longest gap at an alarm start, and the time the loop waits in the clip's finish().

Renders the demo scene at 1280x720 into an MP4 once, then replays it --fast through the real Agent (decode,
detection, event engine, pre-roll ring, H.264 clip in its encoder thread, outbox), offline, REPS times, each in a
fresh process so its peak RSS is the agent's alone.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

from agent.config import parse_config  # noqa: E402
from agent.pipeline import Agent  # noqa: E402
from agent.storage.recorder import Recorder  # noqa: E402
from bench.rows import emit  # noqa: E402
from common.clock import SystemClock  # noqa: E402
from drivers.camera.replay import ReplayCamera  # noqa: E402
from evaluation.demo import write_demo  # noqa: E402

REPS = 3
FPS = 10.0
PRE_ROLL_S = 10.0
RSS_TARGET_MIB = 140.0
GAP_TARGET_S = 2 / FPS          # the loop's longest gap at an alarm start: at most 2 frame intervals
FINISH_TARGET_S = 0.5           # the loop waits this long at most for a clip's last queued frames
#: after the alarm frame, this many frames are watched for a stall (the pre-roll is encoded meanwhile)
GAP_WINDOW = 30


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
    with tempfile.TemporaryDirectory() as work:
        video = Path(work) / "demo720.mp4"
        write_demo(video, seconds=40.0, fps=FPS, width=1280, height=720)
        runs = []
        for rep in range(REPS):
            out = subprocess.run([sys.executable, __file__, str(video), str(Path(work) / f"data{rep}")],
                                 check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            print(f"  rep {rep}: {runs[-1]}", flush=True)
    report(runs)


def report(runs: list[dict]) -> None:
    fps = [run["fps"] for run in runs]
    emit("whole-pipeline fps (1280x720 replay --fast, 10 s pre-roll)", ">= 30 fps", fps, "fps", min(fps) >= 30)
    rss = [run["peak_rss_mib"] for run in runs]
    emit("peak RSS (10 s pre-roll, 1280x720 10 fps, with alarm)", f"< {RSS_TARGET_MIB:.0f} MiB", rss, "MiB",
         max(rss) < RSS_TARGET_MIB)
    gaps = [run["alarm_gap_s"] * 1000 for run in runs if run["alarm_gap_s"] is not None]
    emit("alarm-start frame gap (longest, alarm frame + 30)", f"<= {GAP_TARGET_S * 1000:.0f} ms", gaps or None,
         "ms", bool(gaps) and max(gaps) <= GAP_TARGET_S * 1000, note="no alarm" if not gaps else "")
    finishes = [run["finish_s"] * 1000 for run in runs if run["finish_s"] is not None]
    emit("clip finish time (loop waits in finish())", f"<= {FINISH_TARGET_S * 1000:.0f} ms", finishes or None,
         "ms", bool(finishes) and max(finishes) <= FINISH_TARGET_S * 1000, note="no clip" if not finishes else "")
    dropped = [run["dropped"] for run in runs]
    emit("clip frames dropped (encoder behind)", "0", dropped, "frames", max(dropped) == 0)


def measure(video: Path, data_dir: Path) -> dict:
    cv2.setNumThreads(1)    # as the agent on a Pi: one OpenCV thread beside the encoder thread
    config = parse_config({"data_dir": str(data_dir),
                           "recorder": {"pre_roll_s": PRE_ROLL_S, "post_roll_s": 10.0}})
    clock = SystemClock()
    frame_done: list[float] = []
    starts: list[int] = []
    finishes: list[float] = []
    dropped: list[int] = []
    original_start, original_finish = Recorder.start, Recorder.finish

    def start(recorder, event_id, frame):
        starts.append(len(frame_done))      # the alarm frame is the next to complete
        original_start(recorder, event_id, frame)

    def finish(recorder):
        began = time.perf_counter()
        clip = original_finish(recorder)
        finishes.append(time.perf_counter() - began)
        dropped.append(getattr(recorder.sink, "dropped_frames", 0))
        return clip

    Recorder.start, Recorder.finish = start, finish
    camera = ReplayCamera(video, clock=clock, realtime=False, detect_width=320)
    agent = Agent(config, camera, clock, upload=False, on_frame=lambda frame: frame_done.append(time.perf_counter()))
    started = time.perf_counter()
    summary = agent.run()
    elapsed = time.perf_counter() - started
    gaps = []
    for index in starts:
        window = frame_done[max(index - 1, 0):index + GAP_WINDOW]
        gaps += [later - earlier for earlier, later in zip(window, window[1:], strict=False)]
    steady = [b - a for a, b in zip(frame_done, frame_done[1:], strict=False)]
    return {"frames": summary.frames, "alarms": summary.alarms, "fps": summary.frames / elapsed,
            "peak_rss_mib": peak_rss_mib(), "alarm_gap_s": max(gaps) if gaps else None,
            "median_gap_s": statistics.median(steady) if steady else None,
            "finish_s": max(finishes) if finishes else None, "dropped": sum(dropped)}


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(json.dumps(measure(Path(sys.argv[1]), Path(sys.argv[2]))))
    else:
        main()
