"""Is the object in this box a person? OpenCV's built-in HOG people detector, run on the box's crop at full size.

The motion detector sees a 320-px-wide image, where shape and height are all there is to tell a crouching person
from a fox. The recorded frame has four times the detail: cut the box out of it (with some context, as the
detector's 64x128 window holds a person ~96 px tall with a margin around), scale it so the box fits that window,
and let the HOG linear SVM that ships inside OpenCV (Dalal-Triggs, trained on upright pedestrians, no download)
judge that crop only.

It only ever *adds* evidence: a person HOG cannot see (far, sitting, half hidden, at night ~20 px tall) scores low
like a fox does, so "not_person" never means "not a person" to the caller, only "HOG does not confirm it". Boxes
too small to scale up honestly get "too_small" and no guess.

Pure: a grey image and a box in, a verdict out; no I/O, no clock. The cost is bounded by the crop size (the crop is
scaled to about BOX_PX rows whatever the box's size) and the few pyramid levels detectMultiScale walks on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

#: the default people detector's window (w, h) and the height of the person it was trained on inside it
WINDOW = (64, 128)
PERSON_IN_WINDOW = 96
#: a motion box is rarely the person's exact outline (the restore dilation adds a few px, a dark leg or the head
#: may be missing): the crop is scaled so the box is BOX_PX tall, and the pyramid then looks for a person from
#: PERSON_IN_WINDOW / BOX_PX (0.7) to 1.61 * 0.7 (1.13) of the box's height
BOX_PX = 137
LEVELS = (1.0, 1.1, 1.21, 1.33, 1.46, 1.61)
#: window step (px) at each level, and the SVM margin below which a window is not even reported
STRIDE = (8, 8)
HIT_FLOOR = -1.0
#: context cut around the box, as a share of its height (each side); HOG's window needs its margin
MARGIN = 0.25
#: a box is scaled up at most this much: beyond it the crop holds no detail HOG could use, so smaller boxes are
#: "too_small" (BOX_PX / MAX_UPSCALE = 46 px at full size)
MAX_UPSCALE = 3.0
#: widest crop, as a multiple of its height: bounds the cost of a long, low box (a car, a dog seen side on)
MAX_WIDTH = 3.0
#: SVM margin of the best window on the box from which it counts as a person (0 is the trained boundary; a little
#: above it keeps textured background from passing as a person)
SCORE_MIN = 0.5

Verdict = Literal["person", "not_person", "too_small"]


@dataclass(frozen=True, slots=True)
class PersonVerdict:
    """verdict: 'person' (HOG confirms), 'not_person' (it does not: not evidence of absence), 'too_small'.
    score: SVM margin of the best window on the box (-inf when no window fits it, 0 when too small)."""

    verdict: Verdict
    score: float

    @property
    def person(self) -> bool:
        return self.verdict == "person"


def min_height_px() -> float:
    """Smallest box height (px at full size) that is checked at all."""
    return BOX_PX / MAX_UPSCALE


class PersonCheck:
    """One HOG people detector, reused for every check (building one costs more than a check)."""

    def __init__(self, score_min: float = SCORE_MIN) -> None:
        self.score_min = score_min
        self._hog = cv2.HOGDescriptor()  # defaults: 64x128 window, 8x8 cells, 9 bins
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def check(self, grey: np.ndarray, box: tuple[float, float, float, float]) -> PersonVerdict:
        """The verdict on the object in `box` = (x, y, w, h), in `grey`'s pixels (the full-size frame, grey)."""
        if grey.ndim != 2 or grey.dtype != np.uint8:
            raise ValueError(f"PersonCheck.check expects a 2-D uint8 image, got {grey.dtype} {grey.shape}")
        x, y, w, h = (float(v) for v in box)
        if h < min_height_px() or w < 1:
            return PersonVerdict("too_small", 0.0)
        crop, placed = _crop(grey, x, y, w, h)
        if crop is None:
            return PersonVerdict("too_small", 0.0)
        score = self._best_score(crop, placed)
        return PersonVerdict("person" if score >= self.score_min else "not_person", score)

    def _best_score(self, crop: np.ndarray, box: tuple[float, float, float, float]) -> float:
        """Best SVM margin among windows whose person lies on the box (a bystander in the margin does not count),
        over a pyramid of at most LEVELS levels (raw window hits: one crop holds one object)."""
        best = -np.inf
        for level in LEVELS:
            size = (round(crop.shape[1] / level), round(crop.shape[0] / level))
            if size[0] < WINDOW[0] or size[1] < WINDOW[1]:
                break
            image = crop if level == 1.0 else cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            found, weights = self._hog.detect(image, hitThreshold=HIT_FLOOR, winStride=STRIDE)
            for (wx, wy), weight in zip(np.reshape(found, (-1, 2)), np.ravel(weights), strict=True):
                rect = (wx * level, wy * level, WINDOW[0] * level, WINDOW[1] * level)
                if weight > best and _on_box(rect, box):
                    best = float(weight)
        return best

def _crop(grey: np.ndarray, x: float, y: float, w: float, h: float
          ) -> tuple[np.ndarray | None, tuple[float, float, float, float]]:
    """The box with MARGIN of context, scaled so the box is BOX_PX tall, padded (edge pixels repeated) to at
    least one window; and the box's place in it."""
    rows, cols = grey.shape
    margin = MARGIN * h
    x0, y0 = max(0, int(x - margin)), max(0, int(y - margin))
    x1, y1 = min(cols, int(np.ceil(x + w + margin))), min(rows, int(np.ceil(y + h + margin)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None, (0, 0, 0, 0)
    scale = BOX_PX / h
    if (x1 - x0) > MAX_WIDTH * (y1 - y0):  # keep the middle of a very long box
        keep = int(MAX_WIDTH * (y1 - y0))
        x0 = int(x + w / 2 - keep / 2)
        x0, x1 = max(0, x0), min(cols, x0 + keep)
    part = grey[y0:y1, x0:x1]
    size = (max(1, round(part.shape[1] * scale)), max(1, round(part.shape[0] * scale)))
    scaled = cv2.resize(part, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    pad_x, pad_y = max(0, WINDOW[0] - size[0]), max(0, WINDOW[1] - size[1])
    if pad_x or pad_y:
        scaled = cv2.copyMakeBorder(scaled, pad_y // 2, pad_y - pad_y // 2, pad_x // 2, pad_x - pad_x // 2,
                                    cv2.BORDER_REPLICATE)
    placed = ((x - x0) * scale + pad_x // 2, (y - y0) * scale + pad_y // 2, w * scale, h * scale)
    return scaled, placed


def _on_box(rect: tuple[float, float, float, float], box: tuple[float, float, float, float]) -> bool:
    """The window's person explains the object: their centre lies in the middle half of the box (a window
    firing on a car's or a fence post's side edge does not) and their height (PERSON_IN_WINDOW of the window's)
    is 0.6-1.4 times the box's."""
    rx, ry, rw, rh = rect
    bx, by, bw, bh = box
    dx = (rx + rw / 2 - (bx + bw / 2)) / bw
    dy = (ry + rh / 2 - (by + bh / 2)) / bh
    person_h = rh * PERSON_IN_WINDOW / WINDOW[1]
    return abs(dx) <= 0.25 and abs(dy) <= 0.25 and 0.6 * bh <= person_h <= 1.4 * bh
