"""Motion detection on the small luma image: background model, difference, threshold, clean-up, blobs.

Pure: arrays in, results out. No clocks, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class MotionSettings(BaseModel):
    """Detection settings (config section [detection])."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: int = Field(25, ge=1, le=255, description="Luma difference (0-255) that marks a pixel as changed.")
    learning_rate: float = Field(0.02, gt=0, le=1, description="Share of each frame blended into the background.")
    blur: int = Field(5, ge=1, le=31, description="Odd Gaussian kernel size applied before differencing.")
    min_area: float = Field(0.002, gt=0, le=1, description="Smallest blob that counts, as a share of the image area.")
    min_score: float = Field(0.002, ge=0, le=1, description="Changed share of the image needed for a motion frame.")


@dataclass(frozen=True, slots=True)
class Box:
    """A blob's bounding box in detection-image pixels."""

    x: int
    y: int
    w: int
    h: int
    area: int

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


@dataclass(frozen=True, slots=True)
class MotionResult:
    """What the detector saw in one frame."""

    motion: bool
    score: float
    boxes: tuple[Box, ...] = ()
    mask: np.ndarray | None = field(default=None, repr=False)


class MotionDetector:
    """Running-average background subtraction with blob extraction."""

    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        self._background: np.ndarray | None = None
        kernel = settings.blur | 1
        self._blur_size = (kernel, kernel)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))

    def process(self, luma: np.ndarray) -> MotionResult:
        smoothed = cv2.GaussianBlur(luma, self._blur_size, 0).astype(np.float32)
        if self._background is None or self._background.shape != smoothed.shape:
            self._background = smoothed
            return MotionResult(motion=False, score=0.0, mask=np.zeros(luma.shape, np.uint8))
        diff = cv2.absdiff(smoothed, self._background)
        mask = (diff > self.settings.threshold).astype(np.uint8) * 255
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        cv2.accumulateWeighted(smoothed, self._background, self.settings.learning_rate)
        boxes = self._blobs(mask)
        image_area = mask.shape[0] * mask.shape[1]
        score = sum(box.area for box in boxes) / image_area
        return MotionResult(motion=bool(boxes) and score >= self.settings.min_score, score=score,
                            boxes=tuple(boxes), mask=mask)

    def _blobs(self, mask: np.ndarray) -> list[Box]:
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        min_px = self.settings.min_area * mask.shape[0] * mask.shape[1]
        boxes = [Box(int(x), int(y), int(w), int(h), int(a)) for x, y, w, h, a in stats[1:count] if a >= min_px]
        return sorted(boxes, key=lambda box: -box.area)
