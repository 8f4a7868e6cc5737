"""Whole-pipeline figures with a 10 s pre-roll at 1280x720 10 fps, alarms included.

Renders the demo scene at 1280x720 into an MP4 once, with a 12 s lead-in of the empty yard so the alarm finds a
full 10 s pre-roll, then replays it through the real Agent (decode, detection, event engine, pre-roll ring, H.264
clip in its encoder thread, outbox), offline, each rep in a fresh process (so its peak RSS is the agent's alone)
with the systemd unit's malloc settings (its Environment=, read from systemd/pid-agent.service). Two passes:
- `--fast`, REPS times: replay throughput (a recording's clip waits for its encoder, so this includes x264);
- real time at 10 fps, as a live unit, REPS times: peak RSS, the frame loop's longest gap at the alarm start,
  the time the loop waits in the clip's finish(), frames dropped from the clip (the live policy: drop, count).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the agent and its libraries are imported only in the measured child processes (write_video, measure): this
# parent must not map them, or their page cache could not be dropped before each rep (bench/page_cache.py)
from bench.page_cache import drop_from_page_cache, library_files  # noqa: E402
from bench.rows import emit, pi_estimate, unit_environment  # noqa: E402

REPS = 5
FPS = 10.0
PRE_ROLL_S = 10.0
WALK_AT_S = 12.0                # empty yard is added before the demo, so its walk starts here
DEMO_S = 16.0                   # the demo's walk is over by 11 s; the post-roll ends the clip by the end
RSS_TARGET_MIB = 140.0
FAST_FPS_TARGET = 30.0          # replay throughput: 3x real time at 10 fps (see the row's note for a Pi)
GAP_TARGET_S = 2 / FPS          # the loop's longest gap at an alarm start: at most 2 frame intervals
FINISH_TARGET_S = 0.5           # the loop waits this long at most for a clip's last queued frames
#: after the alarm frame, this many frames are watched for a stall (the pre-roll is encoded meanwhile)
GAP_WINDOW = 30
#: the unit's own malloc setting (systemd/pid-agent.service), so the figure is the unit's
UNIT_ENV = unit_environment()


def _status_mib(key: str) -> float | None:
    """One figure of /proc/self/status (kB there) in MiB, or None where it cannot be read."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """Peak resident memory of this process image (VmHWM: unlike ru_maxrss it does not carry over the
    parent's memory from before exec)."""
    peak = _status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def mapped_file_mib() -> float | None:
    """Resident pages of mapped files (RssFile: the libraries' code and data, clean page cache) as the run ends;
    they only grow over a run, so this bounds their share of the peak. How many a library costs depends on the
    kernel too: one that maps a whole large page-cache folio per fault (Linux 6.18 here) maps more of each."""
    return _status_mib("RssFile")


def write_video(path: Path) -> None:
    """The 1280x720 demo scene after its own empty yard (frames from before the walk, replayed) up to WALK_AT_S."""
    from agent.config import parse_config
    from agent.storage.encoding import ClipWriter
    from common.clock import ManualClock
    from drivers.camera.synthetic import WALK_START_S, SyntheticCamera

    camera = SyntheticCamera(clock=ManualClock(), width=1280, height=720, fps=FPS, duration_s=DEMO_S)
    writer = ClipWriter(path, parse_config({}).recorder.model_copy(update={"qp": 20}), FPS, 1280, 720)
    with camera:
        frames = list(camera.frames())
    empty = [frame for frame in frames if frame.ts < WALK_START_S - 0.5]
    lead = [empty[index % len(empty)] for index in range(int((WALK_AT_S - WALK_START_S) * FPS))]
    for index, frame in enumerate(lead + frames):
        writer.add(index / FPS, frame.image)
    writer.close()


def run_reps(video: Path, work: Path, mode: str) -> list[dict]:
    runs = []
    libraries = library_files()
    for rep in range(REPS):
        dropped = drop_from_page_cache(libraries)  # each rep meets its libraries as a booted unit does
        out = subprocess.run([sys.executable, __file__, mode, str(video), str(work / f"{mode}{rep}")],
                             check=True, capture_output=True, text=True, env=dict(os.environ, **UNIT_ENV)).stdout
        runs.append({**json.loads(out.strip().splitlines()[-1]), "dropped_files": f"{dropped}/{len(libraries)}"})
        print(f"  {mode} rep {rep}: {runs[-1]}", flush=True)
    return runs


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        video = Path(work) / "demo720.mp4"
        subprocess.run([sys.executable, __file__, "render", str(video)], check=True)
        fast = run_reps(video, Path(work), "fast")
        live = run_reps(video, Path(work), "live")
    report(fast, live)


def report(fast: list[dict], live: list[dict]) -> None:
    fps = [run["fps"] for run in fast]
    emit("whole-pipeline fps (1280x720 replay --fast, 10 s pre-roll)", f">= {FAST_FPS_TARGET:.0f} fps", fps, "fps",
         min(fps) >= FAST_FPS_TARGET, pi=pi_estimate(statistics.median(fps), "fps"),
         note="replay decode + detection + pre-roll JPEG + x264 clip; a unit's camera replaces the decode")
    rss = [run["peak_rss_mib"] for run in live]
    emit("peak RSS, live unit (10 s pre-roll, 1280x720 10 fps, with alarm)", f"< {RSS_TARGET_MIB:.0f} MiB", rss,
         "MiB", max(rss) < RSS_TARGET_MIB, note=file_share(live), pi="same (memory does not scale with CPU speed)")
    rss_fast = [run["peak_rss_mib"] for run in fast]
    emit("peak RSS, --fast replay (clip queue kept full)", f"< {RSS_TARGET_MIB:.0f} MiB", rss_fast, "MiB",
         max(rss_fast) < RSS_TARGET_MIB, note=file_share(fast), pi="n/a (not a live unit)")
    gaps = [run["alarm_gap_s"] * 1000 for run in live if run["alarm_gap_s"] is not None]
    emit("alarm-start frame gap, live (longest, alarm frame + 30)", f"<= {GAP_TARGET_S * 1000:.0f} ms",
         gaps or None, "ms", bool(gaps) and max(gaps) <= GAP_TARGET_S * 1000, note="no alarm" if not gaps else "",
         pi="loop work x6-12 (detection, JPEG), encoder on its own core" if gaps else "")
    finishes = [run["finish_s"] * 1000 for run in live if run["finish_s"] is not None]
    emit("clip finish time, live (loop waits in finish())", f"<= {FINISH_TARGET_S * 1000:.0f} ms",
         finishes or None, "ms", bool(finishes) and max(finishes) <= FINISH_TARGET_S * 1000,
         note="no clip" if not finishes else "",
         pi="near 0 while the encoder keeps up; else the waiting frames' encode x6-12 (bounded by clip_queue_bytes)")
    dropped = [run["dropped"] for run in live]
    emit("clip frames dropped, live (encoder behind)", "0", dropped, "frames", max(dropped) == 0,
         pi="see the encoder rows: ultrafast at 1 thread fits a Pi 4 core")


def file_share(runs: list[dict]) -> str:
    """The row's note: how much of the peak is mapped library files (median over the reps), for the reader."""
    files = [run["file_mib"] for run in runs if run.get("file_mib") is not None]
    share = f"mapped library files {statistics.median(files):.1f} MiB of it (RssFile)" if files else ""
    return f"{share}; page cache dropped first for {runs[0]['dropped_files']} shared objects" if runs else share


def measure(video: Path, data_dir: Path, realtime: bool) -> dict:
    from agent.config import parse_config
    from agent.pipeline import Agent
    from agent.storage.clip_sink import SoftwareClipSink
    from agent.storage.recorder import Recorder
    from common.clock import SystemClock
    from drivers.camera.replay import ReplayCamera

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
        if realtime and isinstance(recorder.sink, SoftwareClipSink):
            recorder.sink.wait_when_full = False   # a live camera's clip policy: drop and count, never wait
        original_start(recorder, event_id, frame)

    def finish(recorder):
        began = time.perf_counter()
        clip = original_finish(recorder)
        finishes.append(time.perf_counter() - began)
        dropped.append(recorder.dropped_frames or 0)
        return clip

    Recorder.start, Recorder.finish = start, finish
    camera = ReplayCamera(video, clock=clock, realtime=realtime, detect_width=320)
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
            "peak_rss_mib": peak_rss_mib(), "file_mib": mapped_file_mib(), "alarm_gap_s": max(gaps) if gaps else None,
            "median_gap_s": statistics.median(steady) if steady else None,
            "finish_s": max(finishes) if finishes else None, "dropped": sum(dropped)}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "render":
        write_video(Path(sys.argv[2]))
    elif len(sys.argv) == 4:
        print(json.dumps(measure(Path(sys.argv[2]), Path(sys.argv[3]), realtime=sys.argv[1] == "live")))
    else:
        main()
