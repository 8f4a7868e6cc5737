"""Our detector against Frigate's default motion detector (ImprovedMotionDetector, loaded from FRIGATE=path) on the
same real frames, in the same process, one OpenCV thread, repetitions interleaved.

Each side gets what it gets in its own app: Frigate the full frame's luma (it slices the Y plane and resizes it to
100 px high itself), we the same decoded frame's Y plane through our replay path (downscale to the detection width,
limited-range stretch) and MotionDetector.process. Cost is the thread's CPU time (time.thread_time), so other jobs on a
shared machine inflate it less than wall time; the ratio is taken per interleaved pair.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import av
import cv2
import numpy as np

from bench.frigate_motion import FrigateUnavailable, frigate_config, load_detector_class
from bench.rows import emit, pi_estimate
from drivers.camera.replay import video_luma
from models.motion import MotionDetector, MotionSettings

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "14_night_lane_people_far" / "cctv.mp4"
FRAMES = 200
REPS = 5
TARGET_RATIO = 2.0
DETECT_WIDTH = 320


class Footage:
    """FRAMES decoded frames of the real 1280x720 clip, each kept as its own decoded picture (cache-cold, as from a
    camera): `frames` for our replay path, `lumas` the same Y planes as arrays (views, no copy) for Frigate."""

    def __init__(self, path: Path, size: tuple[int, int] | None = None) -> None:
        self.frames = []
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                if size is not None:
                    frame = frame.reformat(width=size[0], height=size[1], format="yuv420p")
                self.frames.append(frame)
                if len(self.frames) == FRAMES:
                    break
        self.lumas = [_y_plane(frame) for frame in self.frames]


def _y_plane(frame) -> np.ndarray:
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, :frame.width]


def ours_s(footage: Footage, settings: MotionSettings, warm: int) -> float:
    detector = MotionDetector(settings)
    for index, frame in enumerate(footage.frames[:warm]):
        detector.process(video_luma(frame, DETECT_WIDTH), index / 10)
    began = time.thread_time()
    for index, frame in enumerate(footage.frames[warm:], start=warm):
        detector.process(video_luma(frame, DETECT_WIDTH), index / 10)
    return (time.thread_time() - began) / (len(footage.frames) - warm)


def frigate_s(footage: Footage, detector_class: type, tree: Path, warm: int) -> float:
    shape = footage.lumas[0].shape
    detector = detector_class(shape, frigate_config(tree, shape), 10)
    for luma in footage.lumas[:warm]:
        detector.detect(luma)
    began = time.thread_time()
    for luma in footage.lumas[warm:]:
        detector.detect(luma)
    return (time.thread_time() - began) / (len(footage.lumas) - warm)


def compare(label: str, footage: Footage, detector_class: type, tree: Path) -> None:
    settings = MotionSettings()
    warm = int(settings.startup_s * 10) + 5  # our start-up learning (object stages skipped) is not timed
    ours, theirs = [], []
    for rep in range(REPS):
        # interleaved, order alternating, so a burst of load elsewhere hits both sides alike
        if rep % 2:
            theirs.append(frigate_s(footage, detector_class, tree, warm))
            ours.append(ours_s(footage, settings, warm))
        else:
            ours.append(ours_s(footage, settings, warm))
            theirs.append(frigate_s(footage, detector_class, tree, warm))
    ratios = [t / o for o, t in zip(ours, theirs, strict=True)]
    ours_fps, theirs_fps = 1 / statistics.median(ours), 1 / statistics.median(theirs)
    print(f"  {label}: ours " + ", ".join(f"{v * 1e6:.0f}" for v in ours) + " us/frame; Frigate "
          + ", ".join(f"{v * 1e6:.0f}" for v in theirs) + " us/frame")
    emit(f"detector vs Frigate motion detector, {label} (fps ratio, 1 thread)", f"median >= {TARGET_RATIO:.0f}x",
         ratios, "x", statistics.median(ratios) >= TARGET_RATIO,
         note=f"ours {ours_fps:.0f} fps, Frigate {theirs_fps:.0f} fps, medians of CPU time",
         pi=f"same ratio; ours {pi_estimate(ours_fps, 'fps')}")


def main(tree: str | None) -> None:
    labels = ("same frames, 1280x720 real footage", "same frames, 640x360 real footage")
    reason = None
    if not tree:
        reason = "skipped (FRIGATE=path not given)"
    elif not FOOTAGE.exists():
        reason = f"skipped (footage not found at {FOOTAGE})"
    else:
        try:
            detector_class = load_detector_class(Path(tree))
        except FrigateUnavailable as error:
            reason = f"skipped ({error})"
    if reason:
        for label in labels:
            emit(f"detector vs Frigate motion detector, {label} (fps ratio, 1 thread)",
                 f"median >= {TARGET_RATIO:.0f}x", None, "x", None, note=reason)
        return
    cv2.setNumThreads(1)
    for label, size in zip(labels, (None, (640, 360)), strict=True):
        compare(label, Footage(FOOTAGE, size), detector_class, Path(tree))
