"""Generator of hard detection cases from a real still: a drawn person walking (optionally far and tiny), a light
ramp, an IR switch, sensor noise, a small animal crossing. Frames are detection-size luma images with their times.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.scale import downscale


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


def frames(still: np.ndarray, seconds: float, fps: float = 10.0, walkers: tuple[Walker, ...] = (),
           ramp: tuple[float, float, float] | None = None, ir_switch_s: float | None = None, noise: float = 0.0,
           seed: int = 0) -> list[tuple[float, np.ndarray]]:
    """(time, luma) pairs. ramp = (start_s, duration_s, relative change, e.g. -0.4); ir_switch_s: the image turns
    mono-IR (contrast-flattened and brighter) at that time; noise: sensor noise sigma in grey levels."""
    rng = np.random.default_rng(seed)
    base = still.astype(np.float32)
    ir = cv2.GaussianBlur(base, (0, 0), 1.0) * 0.6 + 70.0
    out = []
    for index in range(int(seconds * fps)):
        t = index / fps
        image = ir.copy() if ir_switch_s is not None and t >= ir_switch_s else base.copy()
        layer = np.zeros_like(image)
        for walker in walkers:
            if t >= walker.start_s:
                _draw(layer, walker, t)
        image = image + layer
        if ramp is not None:
            start, duration, change = ramp
            image *= 1.0 + change * min(1.0, max(0.0, (t - start) / duration))
        if noise:
            image += rng.normal(0.0, noise, image.shape).astype(np.float32)
        out.append((t, np.clip(image, 0, 255).astype(np.uint8)))
    return out
