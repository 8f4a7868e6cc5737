"""The analyzer's second look at detected objects: OpenCV's HOG people detector on the full-size frame
(models/person_check.py), only where a verdict can change something.

- An object the shape rule calls "animal" (long and low against a person's height at its spot) that HOG confirms
  as a person on READMIT_CONFIRMATIONS checks is a person crouching, bending or carrying something: it counts as
  intrusion motion again, labelled "person". One confirmation is not enough here, as a wrong one raises an alarm.
- An alarm about to start whose largest object is not already a person gets one check; confirmed, its class
  (the largest box's label) is "person". Later boxes of a confirmed object keep that label.
- HOG never takes anything away: "not_person" and "too_small" leave every box as the shape rule labelled it (a far
  person at night, ~20 px tall, never passes HOG and must still raise the alarm).

Cost stays off the hot loop: a frame without animal-shaped objects tall enough at full size, and without an
alarm starting, runs no check. Each followed object is checked at most every RECHECK_S and at most
MAX_OBJECT_CHECKS times, at most MAX_FRAME_CHECKS checks per frame. Objects are followed from frame to frame by
box overlap (the tracker's identities stay inside the detector).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

from models.motion import Box, MotionResult, covered_share
from models.person_check import MARGIN, PersonCheck, PersonVerdict, min_height_px

#: confirmations an animal-shaped object needs before it counts as a person (a dog's legs can pass HOG once)
READMIT_CONFIRMATIONS = 2
#: an object is checked again at most this often (s) and at most this many times in all (a fox that stays in
#: view for a minute costs MAX_OBJECT_CHECKS checks, not 600); one animal check per frame at most (a check costs
#: ~5 ms here, 30-60 ms on a Pi 4 core: one keeps a 10 fps frame within its time), objects take turns
RECHECK_S = 0.5
MAX_OBJECT_CHECKS = 8
MAX_FRAME_CHECKS = 1
#: an object's box overlaps (IoU) its box of the last frame at least this much; unseen this long (s) it is
#: forgotten; at most this many objects are remembered
FOLLOW_IOU = 0.3
FORGET_S = 1.0
MAX_OBJECTS = 32


@dataclass(slots=True)
class _Object:
    """What is known of one followed object (boxes in detection-image pixels)."""

    box: Box
    seen_ts: float
    checked_ts: float = -math.inf
    checks: int = 0
    confirmations: int = 0
    last: PersonVerdict | None = None


class PersonVerifier:
    """Applies HOG's verdicts to the analyzer's results; one per camera stream (it follows objects)."""

    def __init__(self, check: PersonCheck | None = None) -> None:
        self._check = check or PersonCheck()
        self._objects: list[_Object] = []
        self.checks = 0  # checks run so far (evaluation and bench count them)

    def frame(self, result: MotionResult, image: np.ndarray, luma_shape: tuple[int, ...], ts: float) -> MotionResult:
        """This frame's result with animal-shaped objects HOG confirmed as people counted as intrusion motion."""
        self._forget(ts)
        if not result.boxes and not result.animals:
            return result
        scale = _scale(image, luma_shape)
        budget = MAX_FRAME_CHECKS
        readmitted = []
        for box in result.animals:
            known = self._follow(box, ts)
            if known.confirmations < READMIT_CONFIRMATIONS and budget and self._due(known, box, scale, ts):
                budget -= 1
                self._run(known, image, box, scale, ts)
            if known.confirmations >= READMIT_CONFIRMATIONS:
                readmitted.append(dataclasses.replace(box, label="person"))
        boxes = [self._labelled(box, self._follow(box, ts)) for box in result.boxes]
        if not readmitted:
            return dataclasses.replace(result, boxes=tuple(boxes)) if boxes != list(result.boxes) else result
        animals = [box for box in result.animals if not any(_same(box, person) for person in readmitted)]
        return _with_boxes(result, boxes + readmitted, animals)

    def alarm_boxes(self, boxes: tuple[Box, ...], image: np.ndarray, luma_shape: tuple[int, ...],
                    ts: float) -> tuple[Box, ...]:
        """The boxes of an alarm about to start, its largest labelled 'person' when HOG confirms it (one check,
        unless this object was checked a moment ago)."""
        if not boxes or boxes[0].label == "person":
            return boxes
        first = boxes[0]
        known = self._follow(first, ts)
        scale = _scale(image, luma_shape)
        if known.confirmations == 0 and self._due(known, first, scale, ts):
            self._run(known, image, first, scale, ts)
        return (self._labelled(first, known), *boxes[1:])

    # following objects ---------------------------------------------------------------------------------------
    def _follow(self, box: Box, ts: float) -> _Object:
        best = max(self._objects, key=lambda known: _iou(known.box, box), default=None)
        if best is None or _iou(best.box, box) < FOLLOW_IOU:
            best = _Object(box, ts)
            self._objects.append(best)
            del self._objects[:-MAX_OBJECTS]
        best.box, best.seen_ts = box, ts
        return best

    def _forget(self, ts: float) -> None:
        self._objects = [known for known in self._objects if 0 <= ts - known.seen_ts <= FORGET_S]

    # checks ------------------------------------------------------------------------------------------------
    @staticmethod
    def _due(known: _Object, box: Box, scale: tuple[float, float], ts: float) -> bool:
        tall_enough = box.h * scale[1] >= min_height_px()
        return tall_enough and known.checks < MAX_OBJECT_CHECKS and ts - known.checked_ts >= RECHECK_S

    def _run(self, known: _Object, image: np.ndarray, box: Box, scale: tuple[float, float], ts: float) -> None:
        grey, placed = _region(image, box, scale)
        verdict = self._check.check(grey, placed)
        self.checks += 1
        known.checks += 1
        known.checked_ts = ts
        known.last = verdict
        known.confirmations += verdict.person

    @staticmethod
    def _labelled(box: Box, known: _Object) -> Box:
        return dataclasses.replace(box, label="person") if known.confirmations and box.label != "person" else box


def _scale(image: np.ndarray, luma_shape: tuple[int, ...]) -> tuple[float, float]:
    """(x, y) factors from detection-image pixels to the full-size frame's."""
    return image.shape[1] / luma_shape[1], image.shape[0] / luma_shape[0]


def _region(image: np.ndarray, box: Box, scale: tuple[float, float]
            ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The grey full-size region around `box` that the check looks at (only it is converted from colour), and the
    box in its pixels."""
    sx, sy = scale
    x, y, w, h = box.x * sx, box.y * sy, box.w * sx, box.h * sy
    pad = MARGIN * h + 2
    rows, cols = image.shape[:2]
    x0, y0 = max(0, int(x - pad)), max(0, int(y - pad))
    x1, y1 = min(cols, int(math.ceil(x + w + pad))), min(rows, int(math.ceil(y + h + pad)))
    part = image[y0:y1, x0:x1]
    grey = part if part.ndim == 2 else cv2.cvtColor(part, cv2.COLOR_BGR2GRAY)
    return grey, (x - x0, y - y0, w, h)


def _with_boxes(result: MotionResult, boxes: list[Box], animals: list[Box]) -> MotionResult:
    """`result` with these counted boxes (largest first, as the alarm's class takes the largest) and animals."""
    boxes.sort(key=lambda box: -box.area)
    score = covered_share(boxes, result.mask.size) if result.mask is not None else result.score
    return dataclasses.replace(result, motion=True, score=score, boxes=tuple(boxes), zone=boxes[0].zone,
                               animals=tuple(animals))


def _same(a: Box, b: Box) -> bool:
    return (a.x, a.y, a.w, a.h) == (b.x, b.y, b.w, b.h)


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0
