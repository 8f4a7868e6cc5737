"""Per-pixel background model: running mean, learned nuisance activity, stationary-change absorption.

Pure: arrays in, arrays out. Rates are given per call by the caller (derived from frame time), so the model
behaves the same at 5 or 30 frames per second. The per-frame path (difference, threshold) is all uint8; the float
statistics are learnt on a subset of frames and their uint8 views refreshed then.
"""

from __future__ import annotations

import cv2
import numpy as np


class BackgroundModel:
    """Running-average background with an adaptive per-pixel threshold.

    `activity` is a running mean of each pixel's absolute difference from the background. Pixels that keep
    changing (foliage, water, flicker, noise at night) get a high activity and therefore a higher threshold: the
    model learns where nuisance lives instead of relying on one global threshold. `busy` is how often each pixel
    is foreground (0..255 = never..always); the tracker asks objects in busy regions to travel further.
    """

    def __init__(self, first: np.ndarray, threshold: np.ndarray, activity_gain: float, activity_cap: int) -> None:
        self.activity_gain = float(activity_gain)
        self.activity_cap = int(activity_cap)
        self.mean = first.astype(np.float32)
        self.mean8 = first.copy()
        self.activity = np.full(first.shape, 2.0, np.float32)
        self.busy = np.zeros(first.shape, np.float32)
        self._age = np.zeros(first.shape, np.uint8)
        # cv2.add with a scalar takes OpenCV's slow scalar path (14 us at 320x180 against 3.5 us with an array)
        self._one = np.ones(first.shape, np.uint8)
        self._cap = np.full(first.shape, self.activity_cap, np.uint8)  # (the same for cv2.min: 2.5 us against 6)
        self._base = threshold.astype(np.float32)
        self.limit = self._limit()

    @property
    def shape(self) -> tuple[int, int]:
        return self.mean.shape

    def _limit(self) -> np.ndarray:
        # threshold per pixel = base + gain x activity, saturated into uint8 for a cheap per-frame compare
        return cv2.convertScaleAbs(cv2.scaleAdd(self.activity, self.activity_gain, self._base))

    def difference(self, smoothed: np.ndarray) -> np.ndarray:
        """|frame - background| in uint8 (absdiff never wraps)."""
        return cv2.absdiff(smoothed, self.mean8)

    def foreground(self, diff: np.ndarray) -> np.ndarray:
        """uint8 mask (0/255) of pixels whose difference exceeds their threshold."""
        return cv2.compare(diff, self.limit, cv2.CMP_GT)

    def learn_background(self, smoothed: np.ndarray, foreground: np.ndarray, rate: float,
                         absorb_steps: int) -> None:
        """Background pixels blend in at `rate`. Foreground pixels are left alone (passing objects must not smear
        into the background) unless they stayed foreground for `absorb_steps` calls in a row: a change that stays
        put (moved chair, parked car, the ghost of someone there at start-up) is then taken as background."""
        if not cv2.hasNonZero(foreground):  # (stops at the first one: 0.3 us against 1.8)
            # nothing is foreground (most frames of a still scene): every pixel blends in and every count restarts,
            # bit for bit what the masked path below gives, in 9 us instead of 25 at 320x180
            cv2.accumulateWeighted(smoothed, self.mean, rate)
            self._age.fill(0)
            self.mean8 = cv2.convertScaleAbs(self.mean)
            return
        cv2.accumulateWeighted(smoothed, self.mean, rate, mask=cv2.bitwise_not(foreground))
        # uint8 count of consecutive foreground calls; AND with the 0/255 mask restarts it where it stops
        self._age = cv2.bitwise_and(cv2.add(self._age, self._one), foreground)
        settled = cv2.compare(self._age, max(1, min(absorb_steps, 254)), cv2.CMP_GE)
        if cv2.hasNonZero(settled):
            cv2.copyTo(smoothed.astype(np.float32), settled, self.mean)
            self._age = cv2.bitwise_and(self._age, cv2.bitwise_not(settled))
        self.mean8 = cv2.convertScaleAbs(self.mean)

    def learn_nuisance(self, diff: np.ndarray, foreground: np.ndarray, activity_rate: float, busy_rate: float,
                       objects: np.ndarray | None) -> None:
        """Update activity and busy levels. `objects` (0/255, optional) marks tracked real objects: they are not
        nuisance, so nothing is learnt there (traffic must not make its own lane insensitive)."""
        learn = None if objects is None else cv2.bitwise_not(objects)
        cv2.accumulateWeighted(cv2.min(diff, self._cap), self.activity, activity_rate, mask=learn)
        cv2.accumulateWeighted(foreground, self.busy, busy_rate, mask=learn)
        self.limit = self._limit()

    def absorb_steady(self, smoothed: np.ndarray, previous: np.ndarray, foreground: np.ndarray) -> None:
        """Take foreground pixels that did not change since the previous frame (within their threshold) into the
        background at once: used while a fresh background settles, where the difference is the view having moved
        on since it was taken, not an object passing (which does not stand still from frame to frame)."""
        steady = cv2.bitwise_and(cv2.compare(cv2.absdiff(smoothed, previous), self.limit, cv2.CMP_LE), foreground)
        if cv2.hasNonZero(steady):
            cv2.copyTo(smoothed.astype(np.float32), steady, self.mean)
            cv2.copyTo(smoothed, steady, self.mean8)

    def relearn(self, smoothed: np.ndarray) -> None:
        """Forget the old background after a scene change (lights, camera moved): start from this frame."""
        self.mean[...] = smoothed
        self.mean8 = smoothed.copy()
        self._age[...] = 0

    def gain_to(self, smoothed: np.ndarray) -> float:
        """Ratio of the frame's mean brightness to the background's (global light level change)."""
        bg = cv2.mean(self.mean8)[0]
        return cv2.mean(smoothed)[0] / bg if bg > 1.0 else 1.0

    def changed_share(self, smoothed: np.ndarray, gain: float) -> float:
        """Share of pixels still foreground when the background is scaled by `gain`."""
        scaled = cv2.convertScaleAbs(self.mean, alpha=gain)
        return cv2.countNonZero(self.foreground(cv2.absdiff(smoothed, scaled))) / scaled.size
