"""Synthetic camera: a rendered yard with sensor noise and one figure walking through.

The project's own demo and tests use it instead of third-party footage. Deterministic for a given seed.
"""

from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np

from common.clock import Clock
from drivers.camera.base import Camera, Frame, make_luma, pace

WALK_START_S = 6.0
WALK_DURATION_S = 5.0


def render_background(width: int, height: int) -> np.ndarray:
    """A static scene: sky gradient, ground, a shed and a fence."""
    image = np.zeros((height, width, 3), np.uint8)
    horizon = height * 2 // 5
    sky = np.linspace(200, 150, horizon, dtype=np.float32)[:, None]
    image[:horizon] = np.stack([sky + 30, sky + 10, sky - 20], axis=-1).clip(0, 255).astype(np.uint8)
    image[horizon:] = (70, 110, 90)
    cv2.rectangle(image, (width // 10, horizon - height // 6), (width // 3, horizon + height // 5), (60, 70, 120), -1)
    for x in range(0, width, max(8, width // 40)):
        cv2.line(image, (x, horizon + height // 10), (x, horizon + height // 5), (90, 100, 110), 2)
    return image


def figure_position(ts: float, width: int, height: int) -> tuple[int, int] | None:
    """Where the walking figure's feet are at time ts, or None when it is out of view."""
    progress = (ts - WALK_START_S) / WALK_DURATION_S
    if not 0.0 <= progress <= 1.0:
        return None
    return int(width * (0.05 + 0.9 * progress)), int(height * 0.85)


def render_frame(background: np.ndarray, ts: float, rng: np.random.Generator, noise_sigma: float) -> np.ndarray:
    height, width = background.shape[:2]
    image = background.copy()
    feet = figure_position(ts, width, height)
    if feet is not None:
        body_h = height // 3
        x, y = feet
        cv2.ellipse(image, (x, y - body_h // 2), (body_h // 7, body_h // 2), 0, 0, 360, (40, 40, 45), -1)
        cv2.circle(image, (x, y - body_h - body_h // 8), body_h // 8, (80, 100, 140), -1)
    # one grey noise plane for all channels: like luma noise, and a third of the cost of per-channel noise
    noise = rng.standard_normal((height, width), dtype=np.float32) * noise_sigma
    return cv2.add(image, cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U)


class SyntheticCamera(Camera):
    """Renders `duration_s` seconds of the demo scene at `fps`: a figure crosses the yard at 6-11 s."""

    def __init__(self, *, clock: Clock, width: int = 640, height: int = 360, fps: float = 10.0,
                 duration_s: float = 20.0, detect_width: int = 320, realtime: bool = False, seed: int = 7,
                 noise_sigma: float = 3.0) -> None:
        self.width, self.height, self.fps = width, height, float(fps)
        self.frame_count = int(round(duration_s * fps))
        self.detect_width = detect_width
        self.realtime = realtime
        self.seed = seed
        self.noise_sigma = noise_sigma
        self._clock = clock  #: paces realtime playback only
        self._background: np.ndarray | None = None

    def open(self) -> None:
        self._background = render_background(self.width, self.height)

    def frames(self) -> Iterator[Frame]:
        rng = np.random.default_rng(self.seed)
        started = self._clock.monotonic()
        for index in range(self.frame_count):
            if self._background is None:
                return
            ts = index / self.fps
            if self.realtime:
                pace(started, ts, self._clock)
            image = render_frame(self._background, ts, rng, self.noise_sigma)
            yield Frame(ts=ts, index=index, image=image, luma=make_luma(image, self.detect_width))
            del image   # not held while the next frame is rendered (see FrameLoop._stream)

    def close(self) -> None:
        self._background = None
