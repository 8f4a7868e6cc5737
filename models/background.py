"""Per-pixel background model: running mean, running activity (nuisance) level, stationary-pixel absorption.

Pure: arrays in, arrays out. All rates are given per frame by the caller (derived from frame time), so the model
behaves the same at 5 or 30 frames per second.
"""

from __future__ import annotations

import cv2
import numpy as np


class BackgroundModel:
    """Running-average background with an adaptive per-pixel threshold.

    `activity` is a running mean of each pixel's absolute difference from the background. Pixels that keep
    changing (foliage, water, flicker) get a high activity and therefore a higher threshold: the model learns
    where nuisance motion lives instead of relying on one global threshold.
    """

    def __init__(self, first: np.ndarray, threshold: float, activity_gain: float, activity_cap: float) -> None:
        self.threshold = float(threshold)
        self.activity_gain = float(activity_gain)
        self.activity_cap = float(activity_cap)
        self.mean = first.astype(np.float32)
        self.activity = np.full(first.shape, 2.0, np.float32)
        self.busy = np.zeros(first.shape, np.float32)  # how often each pixel is foreground, 0..255 = never..always
        self._fg_age = np.zeros(first.shape, np.uint16)  # frames a pixel has been foreground in a row
        self._base = np.full(first.shape, self.threshold, np.float32)
        self._diff = np.empty(first.shape, np.float32)
        self._frame = np.empty(first.shape, np.float32)

    def set_threshold(self, threshold: np.ndarray) -> None:
        """Per-pixel base threshold (detection zones may be more or less sensitive)."""
        self._base = threshold.astype(np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        return self.mean.shape

    def difference(self, smoothed: np.ndarray) -> np.ndarray:
        """|frame - background| as float32 (the frame is widened before subtracting)."""
        self._frame[...] = smoothed
        cv2.absdiff(self._frame, self.mean, dst=self._diff)
        return self._diff

    def foreground(self, diff: np.ndarray) -> np.ndarray:
        """uint8 mask (0/255) of pixels whose difference exceeds threshold + gain x local activity."""
        limit = cv2.scaleAdd(self.activity, self.activity_gain, self._base)
        return cv2.compare(diff, limit, cv2.CMP_GT)

    def update(self, diff: np.ndarray, foreground: np.ndarray, rate: float, activity_rate: float,
               absorb_frames: float, busy_rate: float, objects: np.ndarray | None = None) -> None:
        """Blend the frame in: background pixels at `rate`, foreground pixels only once stationary long enough.

        `objects` (0/255, optional) marks real objects being tracked: they are not nuisance, so activity and busy
        levels are not learnt there (traffic must not make its own lane insensitive)."""
        background_px = cv2.bitwise_not(foreground)
        cv2.accumulateWeighted(self._frame, self.mean, rate, mask=background_px)
        learn = None if objects is None else cv2.bitwise_not(objects)
        clipped = np.minimum(diff, self.activity_cap)
        cv2.accumulateWeighted(clipped, self.activity, activity_rate, mask=learn)
        cv2.accumulateWeighted(foreground, self.busy, busy_rate, mask=learn)  # in 0..255 (mask units)
        # stationary foreground (a parked car, a moved chair, a ghost left by someone who was in the first frame)
        # is absorbed after absorb_frames so it stops being reported
        # (a masked add into a fresh array leaves zeros outside the mask: the count restarts where it stops)
        self._fg_age = age = cv2.add(self._fg_age, 1, mask=foreground)
        settled = cv2.compare(age, min(absorb_frames, 65535.0), cv2.CMP_GE)
        if cv2.countNonZero(settled):
            cv2.copyTo(self._frame, settled, self.mean)
            age[settled > 0] = 0

    def relearn(self, smoothed: np.ndarray) -> None:
        """Forget the old background after a scene change (lights, camera moved): start from this frame."""
        self.mean[...] = smoothed
        self._fg_age[...] = 0

    def changed_share(self, smoothed: np.ndarray, gain: float) -> float:
        """Share of pixels still foreground when the background is scaled by `gain`."""
        scaled = cv2.absdiff(self._frame, self.mean * np.float32(gain))
        return cv2.countNonZero(self.foreground(scaled)) / scaled.size

    def gain_to(self, smoothed: np.ndarray) -> float:
        """Ratio of the frame's mean brightness to the background's (global light level change)."""
        bg = cv2.mean(self.mean)[0]
        return cv2.mean(smoothed)[0] / bg if bg > 1.0 else 1.0
