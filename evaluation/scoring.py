"""Scoring of alarms and foreground masks against ground truth (see ../shared/data/SCORING.md).

Pure: frame ranges and arrays in, numbers out.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np

Range = tuple[int, int]  # first and last frame, inclusive

#: an alarm raised within this many seconds after an intrusion range ends is not false (the intruder leaving)
GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class AlarmSpan:
    """Frames [start, end] on which an alarm was active. `raised` is False when an alarm resumed from post-roll
    (the same alarm continuing, not a new one)."""

    start: int
    end: int
    raised: bool = True


@dataclass(slots=True)
class AlarmScore:
    intrusions: int = 0
    detected: int = 0
    latencies_s: list[float] = field(default_factory=list)   # one per detected range
    missed: list[Range] = field(default_factory=list)
    false_alarms: int = 0
    false_alarm_frames: list[int] = field(default_factory=list)
    scored_hours: float = 0.0                                 # time that is neither intrusion nor dont_care
    animal_alarms: int = 0                                    # false alarms raised while only an animal is in view

    @property
    def false_alarms_per_hour(self) -> float | None:
        return self.false_alarms / self.scored_hours if self.scored_hours > 0 else None

    @property
    def median_latency_s(self) -> float | None:
        return statistics.median(self.latencies_s) if self.latencies_s else None

    @property
    def worst_latency_s(self) -> float | None:
        return max(self.latencies_s) if self.latencies_s else None


def _validate(ranges: list[Range], frames: int, what: str) -> None:
    for first, last in ranges:
        if not (0 <= first <= last):
            raise ValueError(f"{what} range [{first}, {last}] is not a valid [first, last] frame range")
        if last >= frames:
            raise ValueError(f"{what} range [{first}, {last}] ends beyond the clip's {frames} frames")


def _inside(frame: int, ranges: list[Range]) -> bool:
    return any(first <= frame <= last for first, last in ranges)


def score_alarms(spans: list[AlarmSpan], intrusions: list[Range], dont_care: list[Range], fps: float,
                 frames: int, animals: list[Range] = ()) -> AlarmScore:
    """Detected intrusion ranges, onset latencies and false alarms of one clip's alarm spans; a false alarm
    raised inside an `animals` range (an animal in view, no person or vehicle) is also counted as an animal alarm."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    _validate(intrusions, frames, "intrusion")
    _validate(dont_care, frames, "dont_care")
    _validate(list(animals), frames, "animals")
    score = AlarmScore(intrusions=len(intrusions))
    for first, last in intrusions:
        active = [max(first, span.start) for span in spans if span.start <= last and span.end >= first]
        if active:
            score.detected += 1
            score.latencies_s.append((min(active) - first) / fps)
        else:
            score.missed.append((first, last))
    for span in spans:
        if span.raised and _is_false(span.start, intrusions, dont_care, fps):
            score.false_alarms += 1
            score.false_alarm_frames.append(span.start)
            score.animal_alarms += _inside(span.start, list(animals))
    scored = np.ones(frames, bool)
    for first, last in [*intrusions, *dont_care]:
        scored[first:last + 1] = False
    score.scored_hours = float(scored.sum()) / fps / 3600.0
    return score


def _is_false(frame: int, intrusions: list[Range], dont_care: list[Range], fps: float) -> bool:
    if _inside(frame, intrusions) or _inside(frame, dont_care):
        return False
    ended = [last for _first, last in intrusions if last < frame]
    return not ended or (frame - max(ended)) / fps > GRACE_S


@dataclass(slots=True)
class PixelCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    frames: int = 0

    def add(self, other: "PixelCounts") -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.frames += other.frames

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else None


def decode_truth(truth: np.ndarray, cdnet: bool) -> tuple[np.ndarray, np.ndarray]:
    """(foreground, scored) boolean masks of a ground-truth image.

    CDnet: 0 background, 50 shadow (background), 85 outside the ROI and 170 unknown (not scored), 255 foreground.
    Otherwise a plain binary mask (above 127 = foreground), all pixels scored.
    """
    if truth.ndim != 2:
        raise ValueError(f"ground-truth mask must be 2-D, got shape {truth.shape}")
    if cdnet:
        return truth == 255, (truth == 0) | (truth == 50) | (truth == 255)
    return truth > 127, np.ones(truth.shape, bool)


def pixel_counts(predicted: np.ndarray, truth: np.ndarray, cdnet: bool) -> PixelCounts:
    """True/false positives and false negatives of a predicted foreground mask (non-zero = foreground)."""
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted mask {predicted.shape} and ground truth {truth.shape} differ in size")
    foreground, scored = decode_truth(truth, cdnet)
    if not scored.any():
        return PixelCounts()
    said = (predicted > 0) & scored
    truth_fg = foreground & scored
    tp = int(np.count_nonzero(said & truth_fg))
    return PixelCounts(tp, int(np.count_nonzero(said)) - tp, int(np.count_nonzero(truth_fg)) - tp, 1)
