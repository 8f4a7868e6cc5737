"""Tamper checks on real image arrays: covered, defocused, turned; slow darkening is not tamper."""

from __future__ import annotations

import cv2
import numpy as np

from common.hold import Hold
from models.tamper import TamperDetector, TamperSettings


def scene(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((120, 160), 90, np.uint8)
    for _ in range(40):  # sharp-edged rectangles: plenty of structure
        x, y = rng.integers(0, 150), rng.integers(0, 110)
        cv2.rectangle(image, (int(x), int(y)), (int(x + rng.integers(5, 40)), int(y + rng.integers(5, 30))),
                      int(rng.integers(0, 255)), -1)
    return image


def feed(detector: TamperDetector, frames, start: float = 0.0, fps: float = 5.0) -> list[str | None]:
    return [detector.update(frame, start + i / fps) for i, frame in enumerate(frames)]


def held(detector: TamperDetector, hold: Hold, frames, start: float = 0.0, fps: float = 5.0) -> list[str | None]:
    """The detector's verdicts through the one debounce, as the event engine applies it."""
    states = []
    for ts, verdict in zip([start + i / fps for i in range(len(frames))], feed(detector, frames, start, fps),
                           strict=True):
        hold.update(ts, verdict)
        states.append(hold.reason if hold.active else None)
    return states


def test_normal_view_is_not_tamper_and_hold_time_is_respected():
    detector, hold = TamperDetector(TamperSettings()), Hold(3.0)
    assert set(held(detector, hold, [scene(1)] * 30)) == {None}
    states = held(detector, hold, [np.zeros((120, 160), np.uint8)] * 25, start=6.0)
    assert states[5] is None, "1 s of black is not yet tamper"
    assert states[-1] == "covered"


def test_defocus_is_reported():
    detector = TamperDetector(TamperSettings())
    feed(detector, [scene(1)] * 30)
    blurred = cv2.GaussianBlur(scene(1), (0, 0), 4)
    assert feed(detector, [blurred] * 30, start=6.0)[-1] == "defocused"


def test_turned_camera_is_reported():
    detector = TamperDetector(TamperSettings())
    feed(detector, [scene(1)] * 30)
    assert feed(detector, [scene(7)] * 30, start=6.0)[-1] == "turned"


def test_slow_dusk_is_not_tamper():
    detector = TamperDetector(TamperSettings(reference_s=20.0))
    base = scene(1).astype(np.float32)
    frames = [(base * (1.0 - 0.9 * i / 600)).astype(np.uint8) for i in range(600)]  # 2 minutes to near dark
    assert set(feed(detector, frames)) == {None}


def test_disabled_checks_report_nothing():
    detector = TamperDetector(TamperSettings(enabled=False))
    assert set(feed(detector, [np.zeros((120, 160), np.uint8)] * 40)) == {None}
