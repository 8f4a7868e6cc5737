"""A 360° recording for the commissioning page's tests: an overhead fisheye (textured floor disc) in which a
person-shaped bright ellipse walks in towards the unit at a fixed bearing, written as an MP4 through the agent's
own encoder (the replay camera reads it back with PyAV)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from agent.config import RecorderSettings
from agent.storage.encoding import ClipWriter

SIZE = 640          # the recorded frame is SIZE x SIZE; the agent detects on a 320 px luma copy
FPS = 10.0
WALK_FRAMES = (40, 100)  # the person is in the picture on these frames (the detector learns the floor before)
BEARING_DEG = 100.0      # where they walk in (north at image-up, looking down: bearings run clockwise)


def _floor() -> np.ndarray:
    rng = np.random.default_rng(11)
    grey = cv2.GaussianBlur(rng.integers(60, 140, (SIZE, SIZE), dtype=np.uint8), (17, 17), 0)
    floor = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    outside = np.hypot(*np.meshgrid(np.arange(SIZE) - SIZE / 2, np.arange(SIZE) - SIZE / 2)) > SIZE / 2
    floor[outside] = 0  # a fisheye's image circle: black beyond the lens
    return floor


def write_fisheye_walk(path: Path, seconds: float = 12.0) -> Path:
    floor = _floor()
    writer = ClipWriter(path, RecorderSettings(qp=20), FPS, SIZE, SIZE)
    for index in range(round(seconds * FPS)):
        image = floor.copy()
        if WALK_FRAMES[0] <= index < WALK_FRAMES[1]:
            radius = 270 - 2 * (index - WALK_FRAMES[0])
            x = SIZE / 2 + radius * math.sin(math.radians(BEARING_DEG))
            y = SIZE / 2 - radius * math.cos(math.radians(BEARING_DEG))
            # long axis radial, as people look from overhead
            cv2.ellipse(image, (round(x), round(y)), (28, 12), BEARING_DEG - 90, 0, 360, (230, 235, 240), -1)
        writer.add(index / FPS, image)
    writer.close()
    return path
