"""Generator of hard detection cases from a real still: a drawn person walking (optionally far and tiny), a light
ramp, an IR switch, sensor noise, a small animal crossing, an insect fluttering near the lens under IR, rain
streaks. Frames are detection-size luma images with their times.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from drivers.camera.scale import downscale

#: share of the light left in a dark room before its lights come on (frames(lights_on_s=...))
DARK = 0.12


@dataclass(frozen=True)
class Walker:
    """A figure drawn as a head and an upright body (`height` px tall), darker or brighter than the scene by
    `contrast`, entering at `start_s` at (x, foot_y) and moving `speed` px/s horizontally."""

    height: float
    x: float
    foot_y: float
    speed: float
    start_s: float
    contrast: int = -60
    animal: bool = False   # long and low (body 2.2x as long as tall, no head): a cat, fox or possum


def still_from(path: str, index: int = 100, width: int = 320) -> np.ndarray:
    """Frame `index` of a real clip, grey, at detection width."""
    capture = cv2.VideoCapture(path)
    try:
        frame = None
        for _ in range(index + 1):
            ok, image = capture.read()
            if not ok:
                break
            frame = image
    finally:
        capture.release()
    if frame is None:
        raise ValueError(f"no frame {index} in {path}")
    return downscale(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), width)


def _draw(canvas: np.ndarray, walker: Walker, t: float) -> None:
    x = walker.x + walker.speed * (t - walker.start_s)
    h = walker.height
    bottom = walker.foot_y
    if walker.animal:
        half_w, half_h = 1.1 * h, 0.5 * h
        cv2.ellipse(canvas, (int(x), int(bottom - half_h)), (int(half_w), max(1, int(half_h))), 0, 0, 360,
                    float(walker.contrast), -1)
        return
    body_w = max(1, int(round(0.35 * h)))
    top = int(round(bottom - 0.85 * h))
    cv2.rectangle(canvas, (int(x - body_w / 2), top), (int(x + body_w / 2), int(bottom)), float(walker.contrast), -1)
    cv2.circle(canvas, (int(x), int(round(bottom - 0.92 * h))), max(1, int(round(0.09 * h))),
               float(walker.contrast), -1)


@dataclass(frozen=True)
class Insect:
    """A moth or fly close to the lens under IR: a large, blurred, bright disc (`radius` px) that flutters, its
    velocity re-drawn every frame (up to `speed` px/s in any direction), from `start_s` on."""

    radius: float
    start_s: float
    speed: float = 400.0
    brightness: float = 120.0


@dataclass(frozen=True)
class Rain:
    """`count` bright streaks a frame (`length` px, falling steeply), at fresh random places every frame."""

    count: int = 60
    length: int = 8
    brightness: float = 45.0


class _Flutter:
    """Where an insect is at each frame: a random walk with a fresh velocity every frame, kept in view."""

    def __init__(self, insect: Insect, shape: tuple[int, int], rng: np.random.Generator) -> None:
        self.insect, self.rng = insect, rng
        self.pos = np.array([shape[1] / 2, shape[0] / 2], np.float64)
        self.high = np.array([shape[1] - 1, shape[0] - 1], np.float64)

    def step(self, dt: float) -> tuple[int, int]:
        angle = self.rng.uniform(0, 2 * np.pi)
        speed = self.rng.uniform(0.3, 1.0) * self.insect.speed
        self.pos = np.clip(self.pos + speed * dt * np.array([np.cos(angle), np.sin(angle)]), 0, self.high)
        return int(self.pos[0]), int(self.pos[1])


def _draw_insect(image: np.ndarray, insect: Insect, centre: tuple[int, int]) -> None:
    blob = np.zeros_like(image)
    cv2.circle(blob, centre, int(insect.radius), insect.brightness, -1)
    image += cv2.GaussianBlur(blob, (0, 0), insect.radius / 2)  # out of focus so near the lens


def _draw_rain(image: np.ndarray, rain: Rain, rng: np.random.Generator) -> None:
    height, width = image.shape
    streaks = np.zeros_like(image)
    for x, y in zip(rng.integers(0, width, rain.count), rng.integers(0, height, rain.count), strict=True):
        cv2.line(streaks, (int(x), int(y)), (int(x) + 1, int(y) + rain.length), rain.brightness, 1)
    image += streaks


def frames(still: np.ndarray, seconds: float, fps: float = 10.0, walkers: tuple[Walker, ...] = (),
           ramp: tuple[float, float, float] | None = None, ir_switch_s: float | None = None, noise: float = 0.0,
           seed: int = 0, insect: Insect | None = None, rain: Rain | None = None,
           lights_on_s: float | None = None) -> list[tuple[float, np.ndarray]]:
    """(time, luma) pairs. ramp = (start_s, duration_s, relative change, e.g. -0.4); ir_switch_s: the image turns
    mono-IR (contrast-flattened and brighter) at that time; noise: sensor noise sigma in grey levels; insect and
    rain: drawn over the scene (and the walkers) from the start (rain) or insect.start_s; lights_on_s: the scene is
    a dark room (DARK of its light, walkers lit alike) until the lights come on at that time."""
    rng = np.random.default_rng(seed)
    base = still.astype(np.float32)
    ir = cv2.GaussianBlur(base, (0, 0), 1.0) * 0.6 + 70.0
    flutter = None if insect is None else _Flutter(insect, still.shape, rng)
    out = []
    for index in range(int(seconds * fps)):
        t = index / fps
        image = ir.copy() if ir_switch_s is not None and t >= ir_switch_s else base.copy()
        layer = np.zeros_like(image)
        for walker in walkers:
            if t >= walker.start_s:
                _draw(layer, walker, t)
        image = image + layer
        if flutter is not None and t >= insect.start_s:
            _draw_insect(image, insect, flutter.step(1.0 / fps))
        if rain is not None:
            _draw_rain(image, rain, rng)
        if lights_on_s is not None and t < lights_on_s:
            image *= DARK
        if ramp is not None:
            start, duration, change = ramp
            image *= 1.0 + change * min(1.0, max(0.0, (t - start) / duration))
        if noise:
            image += rng.normal(0.0, noise, image.shape).astype(np.float32)
        out.append((t, np.clip(image, 0, 255).astype(np.uint8)))
    return out
