"""CPU cost of the software clip per 1280x720 frame, per x264 preset (one thread, tune zerolatency, the configured
default quality: one constant quantizer, qp 24, and a keyframe a second, as a unit's clip has them), on real night
footage and on the demo's noisy synthetic yard, and the pre-roll ring's bytes per second. The clip's budget on a
unit: half of one Pi 4 core at 10 fps, i.e. 50 ms of Pi CPU per frame, 4.2 ms here at the slow end of the Pi
assumption (12x). Why half: at an alarm's start the encoder thread has the pre-roll to encode while live frames
keep coming; at a share f of its core it catches up after pre-roll x f / (1 - f) seconds, and an alarm shorter than
that makes the loop wait in finish() for the backlog. The shortest clip tail is the 10 s post-roll, and the longest
usual pre-roll is 10 s: f <= 50 % catches up within it (a 5 s pre-roll within 5 s). ultrafast is x264's cheapest
preset; the constant quantizer costs 30-45 % less CPU than crf 26 did (which spent its bits, and x264's time, on
the sensor noise of dark, static frames), at the same worst-frame PSNR (README, Performance).

Each rep encodes the same 40 frames (already yuv420p, as the encoder thread gets them, and handed to PyAV as
ClipWriter hands them: the array wrapped, not copied) into an in-memory MP4, under the unit's malloc settings;
CPU is the process's user + system time, so other jobs on a shared machine inflate it less than wall time.
"""

from __future__ import annotations

import io
import resource
import statistics
import sys
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from agent.config import RecorderSettings  # noqa: E402
from agent.storage.encoding import PTS_PER_SECOND, encoder_options, keyframe_options, to_yuv420, video_frame  # noqa: E402
from bench.rows import PI_SLOWDOWN, emit, pi_estimate, run_as_the_unit  # noqa: E402
from common.clock import ManualClock  # noqa: E402
from drivers.camera.synthetic import SyntheticCamera  # noqa: E402

REPS = 5
FRAMES = 40
PRESETS = ("ultrafast", "superfast", "veryfast")
BUDGET_MS = 50.0 / PI_SLOWDOWN[1]     # 50 % of a Pi 4 core at 10 fps, at the slow end of the assumption
FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "14_night_lane_people_far" / "cctv.mp4"


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def footage_frames() -> list[np.ndarray] | None:
    """40 frames of real 1280x720 night footage (every other frame of 25 fps), or None when it is absent."""
    source = FOOTAGE if FOOTAGE.exists() else Path("../shared/data/14_night_lane_people_far/cctv.mp4")
    if not source.exists():
        return None
    frames = []
    with av.open(str(source)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % 2 == 0:
                frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) == FRAMES:
                break
    return frames


def demo_frames() -> list[np.ndarray]:
    """The demo yard at 1280x720 with its sensor noise and the walker in view (hard for x264: noise)."""
    camera = SyntheticCamera(clock=ManualClock(), width=1280, height=720, fps=10.0, duration_s=11.0)
    with camera:
        return [frame.image for frame in camera.frames() if frame.ts >= 6.0][:FRAMES]


def encode_ms(yuv: list[np.ndarray], preset: str) -> float:
    """CPU ms per frame to encode `yuv` into an MP4 in memory at `preset`, one thread."""
    settings = RecorderSettings(preset=preset, threads=1)
    out = av.open(io.BytesIO(), "w", format="mp4")
    stream = out.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
    stream.codec_context.time_base = Fraction(1, PTS_PER_SECOND)
    stream.options = {**encoder_options(settings), **keyframe_options(10.0)}
    began = cpu_s()
    for index, plane in enumerate(yuv):
        for packet in stream.encode(video_frame(plane, index * 100)):   # as ClipWriter hands it over
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
    spent = cpu_s() - began
    out.close()
    return spent / len(yuv) * 1000


def main() -> None:
    run_as_the_unit()
    cv2.setNumThreads(1)
    default = RecorderSettings().preset
    sources = {"night footage": footage_frames(), "noisy demo yard": demo_frames()}
    for label, frames in sources.items():
        if frames is None:
            emit(f"x264 CPU per 720p frame, {label}", f"<= {BUDGET_MS:.1f} ms", None, "ms", None,
                 note=f"skipped (footage not found at {FOOTAGE})")
            continue
        yuv = [to_yuv420(frame, (1280, 720)) for frame in frames]
        for preset in PRESETS:
            values = [encode_ms(yuv, preset) for _ in range(REPS)]
            median = statistics.median(values)
            # the default carries the verdict (on the median: CPU time still rises on a loaded machine); the
            # other presets are there to show what choosing them would cost
            met = median <= BUDGET_MS if preset == default else None
            mark = " (default)" if preset == default else ""
            emit(f"x264 {preset}{mark} CPU per 720p frame, 1 thread, {label}", f"median <= {BUDGET_MS:.1f} ms",
                 values, "ms", met, pi=pi_estimate(median, "ms", slower=True))
        jpeg = [len(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1]) for frame in frames]
        per_10s = [size * 100 / 2**20 for size in jpeg]     # 100 frames = 10 s at 10 fps
        emit(f"pre-roll ring, 10 s at 720p 10 fps, JPEG q85, {label}", "<= 16 MiB (pre_roll_max_bytes)", per_10s,
             "MiB", max(per_10s) <= 16, pi="same")


if __name__ == "__main__":
    main()
