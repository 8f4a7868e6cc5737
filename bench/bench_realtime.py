"""Share of one core, in real time at 1280x720 10 fps, for detection + event engine + uplink, for decoding, and for
the software clip's encoding, each thread's CPU time (bench/thread_cpu.py) over wall time.

- Unit run: real 1280x720 night footage decoded in its own thread ("decode": H.264 decode, BGR for the recording, luma
  from the Y plane), handed to the real Agent at 10 fps with the luma given, as a camera's lores stream gives it;
  uploading to a real mosquitto on loopback. Over REPS windows of WINDOW_S after a warm-up: the frame loop (minus
  the recorder's share, which it meters), the uplink's threads and the supervisor = detection + engine + uplink;
  the decoder thread = decode; the recorder's share of the loop = the pre-roll ring's JPEG.
- Clip run: the software clip (x264, the configured defaults) fed at 10 fps, clock-paced: the clip thread plus the
  hand-off on the feeding thread (BGR -> yuv420p), over REPS windows.

Both runs under the unit's malloc settings (systemd/pid-agent.service), as a unit runs: with its fixed 128 KiB mmap
threshold every frame-sized array is a fresh mapping, page faults included (the unit's comment says why;
bench/malloc_ab.py compares the settings).

The budgets are shares of one Pi 4 core (a Pi 4 has four: frame loop, clip encoder, decoder or camera stack, the
rest), turned into a share of one core here by the slow end of the Pi assumption (bench/rows.py, 12x).
"""

from __future__ import annotations

import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
import cv2  # noqa: E402

from agent.config import RecorderSettings, parse_config  # noqa: E402
from agent.pipeline import Agent  # noqa: E402
from agent.storage.encoding import ClipWriter, EncoderThread  # noqa: E402
from bench.rows import PI_SLOWDOWN, emit, pi_estimate, run_as_the_unit  # noqa: E402
from bench.thread_cpu import ThreadCpu, native_ids  # noqa: E402
from common.clock import SystemClock  # noqa: E402
from drivers.camera.base import Camera, Frame, pace  # noqa: E402
from drivers.camera.replay import BgrFrames, video_luma  # noqa: E402
from tests.conftest import Broker  # noqa: E402

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "14_night_lane_people_far" / "cctv.mp4"
FPS = 10.0
REPS = 5
WINDOW_S = 5.0
WARM_S = 5.0            # detector start-up and broker connection, not measured
CLIP_WARM_S = 1.0
#: budgets in % of one Pi 4 core, and here (the slow end of the Pi assumption)
#: engine: what a unit always spends; loop: its frame loop's core, half of it so an alarm's start (snapshot, clip
#: opening) has room; decode (replay/RTSP only) and encode (while recording; see bench_encoder.py for why half)
BUDGET_PI = {"engine": 25.0, "loop": 50.0, "decode": 50.0, "encode": 50.0}
SLOW = PI_SLOWDOWN[1]
UPLINK_PREFIXES = ("uplink", "paho")


def budget(role: str) -> float:
    return BUDGET_PI[role] / SLOW


class DecodingCamera(Camera):
    """Real footage decoded in a thread of its own ("decode") and handed over at FPS in real time, each frame with
    its BGR image and its detection luma, as a live camera hands them: the loop's CPU is then its own. The BGR
    conversion is the replay camera's (drivers/camera/replay.py), so the decode row is what that driver costs."""

    live = False

    def __init__(self, path: Path, duration_s: float, clock: SystemClock) -> None:
        self.fps = FPS
        self.frame_count = int(duration_s * FPS)
        self._path = path
        self._clock = clock
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        self._thread = threading.Thread(target=self._decode, name="decode", daemon=True)
        self._thread.start()

    def _decode(self) -> None:
        started = self._clock.monotonic()
        index = 0
        bgr = BgrFrames()   # as the replay camera converts: BGR in reused buffers
        while index < self.frame_count:
            with av.open(str(self._path)) as container:  # loops over the file if the run is longer
                for decoded in container.decode(video=0):
                    ts = index / FPS
                    frame = Frame(ts=ts, index=index, image=bgr.convert(decoded),
                                  luma=video_luma(decoded, 320))
                    pace(started, ts, self._clock)
                    self._queue.put(frame)
                    index += 1
                    if index == self.frame_count:
                        break
        self._queue.put(None)

    def frames(self):
        while (frame := self._queue.get()) is not None:
            yield frame

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(5)


class MeteredAgent(Agent):
    """The Agent, noting the loop thread's CPU spent in recorder.push (the pre-roll ring's JPEG, or the hand-off
    to a clip's encoder), so the loop's own detection and engine work can be told apart from it."""

    recorder_cpu: list[tuple[float, float]]

    def _build_unit(self) -> None:
        super()._build_unit()
        self.recorder_cpu = []
        push = self.recorder.push

        def metered(frame: Frame) -> None:
            began = time.thread_time()
            push(frame)
            self.recorder_cpu.append((time.monotonic(), time.thread_time() - began))

        self.recorder.push = metered


def windows(start: float) -> list[tuple[float, float]]:
    return [(start + n * WINDOW_S, start + (n + 1) * WINDOW_S) for n in range(REPS)]


def unit_run(work: Path) -> dict[str, list[float]]:
    broker = Broker(work)
    broker.start()
    try:
        config = parse_config({"device_id": "pid-bench", "data_dir": str(work / "data"),
                               "broker": {"url": broker.url}})
        clock = SystemClock()
        camera = DecodingCamera(FOOTAGE, WARM_S + REPS * WINDOW_S + 1.0, clock)
        agent = MeteredAgent(config, camera, clock, drain_timeout_s=10)
        existing = native_ids()
        with ThreadCpu() as sampler:
            began = time.monotonic()
            summary = agent.run()
        # the library threads started during the run are FFmpeg's, started by the decoder thread (PyAV's own BGR
        # conversion started two per frame; the driver's filter graph converts on the decoder thread itself); no
        # clip is recorded here, and OpenCV runs on one thread
        sampler.claim_native(existing, "decode")
        names = {threading.current_thread().name}
    finally:
        broker.stop()
    print(f"  unit run: {summary.frames} frames, {summary.alarms} alarms, delivered={summary.delivered}")
    shares: dict[str, list[float]] = {"engine": [], "decode": [], "ring": [], "loop": []}
    for start, end in windows(began + WARM_S):
        spent = sampler.between(start, end)
        recorder = sum(cpu for at, cpu in agent.recorder_cpu if start <= at < end)
        loop = sum(v for k, v in spent.items() if k in names)
        uplink = sum(v for k, v in spent.items() if k.startswith(UPLINK_PREFIXES))
        others = sum(v for k, v in spent.items()
                     if k not in names and not k.startswith(UPLINK_PREFIXES + ("decode", "clip ", "bench-")))
        wall = end - start
        shares["engine"].append(100 * (loop - recorder + uplink + others) / wall)
        shares["decode"].append(100 * spent.get("decode", 0.0) / wall)
        shares["ring"].append(100 * recorder / wall)
        shares["loop"].append(shares["engine"][-1] + shares["ring"][-1])
        print(f"    window: loop {100 * loop / wall:.2f} % (recorder {100 * recorder / wall:.2f} %), uplink "
              f"{100 * uplink / wall:.2f} %, other {100 * others / wall:.2f} %, decode "
              f"{100 * spent.get('decode', 0.0) / wall:.2f} %; other threads: "
              + ", ".join(f"{k} {100 * v / wall:.2f} %" for k, v in spent.items() if k not in names
                          and not k.startswith(UPLINK_PREFIXES + ("decode",))))
    return shares


def clip_run(work: Path) -> list[float]:
    """The clip encoder at FPS, clock-paced, on the same footage: x264 thread + hand-off, % of one core."""
    frames = []
    with av.open(str(FOOTAGE)) as container:
        for decoded in container.decode(video=0):
            frames.append(decoded.to_ndarray(format="bgr24"))
            if len(frames) == 50:
                break
    settings = RecorderSettings()
    writer = ClipWriter(work / "clip.mp4", settings, FPS, 1280, 720)
    encoder = EncoderThread(writer, [], settings.clip_queue_bytes)
    clock = SystemClock()
    feed_cpu: list[tuple[float, float]] = []
    total = int((CLIP_WARM_S + REPS * WINDOW_S + 0.5) * FPS)
    with ThreadCpu() as sampler:
        started = time.monotonic()
        for index in range(total):
            pace(started, index / FPS, clock)
            began = time.thread_time()
            encoder.offer(index / FPS, frames[index % len(frames)])
            feed_cpu.append((time.monotonic(), time.thread_time() - began))
        encoder.close()
    shares = []
    for start, end in windows(started + CLIP_WARM_S):
        spent = sampler.between(start, end)
        clip = sum(v for k, v in spent.items() if k.startswith("clip "))
        feed = sum(cpu for at, cpu in feed_cpu if start <= at < end)
        shares.append(100 * (clip + feed) / (end - start))
    print(f"  clip run: dropped {encoder.dropped} frames; " + ", ".join(f"{s:.2f} %" for s in shares))
    return shares


def main() -> None:
    run_as_the_unit()
    cv2.setNumThreads(1)
    if not FOOTAGE.exists():
        for label in ("detection + engine + uplink", "decode", "encode"):
            emit(f"% of one core, {label}, 720p 10 fps real time", "", None, "%", None,
                 note=f"skipped (footage not found at {FOOTAGE})")
        return
    with tempfile.TemporaryDirectory() as work:
        shares = unit_run(Path(work))
        clip = clip_run(Path(work))
    rows = [
        ("engine", "detection + engine + uplink (luma given; loop, uplink, supervisor)", shares["engine"],
         "detection and event engine on the loop, uplink threads, supervisor; the ring: frame loop row"),
        ("decode", "decode (H.264 720p + BGR + luma, replay/RTSP only)", shares["decode"],
         "a Pi camera hands frames over without it; PyAV decoder thread"),
        ("encode", "encode, software clip while recording (x264 ultrafast + hand-off)", clip,
         "only during an alarm; none on a unit on its camera's hardware encoder"),
        ("loop", "frame loop's core: detection + engine + uplink + pre-roll ring JPEG", shares["loop"],
         f"ring {statistics.median(shares['ring']):.1f} % of it: always, with the software recorder; "
         "none on a hardware-encoder unit"),
    ]
    for role, label, values, note in rows:
        median = statistics.median(values)
        emit(f"% of one core, {label}, 720p 10 fps real time", f"median <= {budget(role):.1f} % "
             f"(= {BUDGET_PI[role]:.0f} % of a Pi 4 core at {SLOW}x)", values, "%", median <= budget(role),
             note=note, pi=pi_estimate(median, "% of a core", slower=True))


if __name__ == "__main__":
    main()
