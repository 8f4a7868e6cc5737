"""Camera tamper detection: lens covered (or blinded flat), defocused, or turned away.

Each check compares the current view with a reference learned slowly while the view is normal, so a scene that is
dark or soft from the start (night, haze) is not tamper, while a sudden change is. The verdict is each check's own:
how long it must persist to count is decided in one place, the event engine (events.tamper_hold_s).
Runs on a tiny copy of the image a few times per second, so it costs nothing per frame.

Pure: images and frame times in, a verdict out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import Field

from common.settings import Section

TAMPER_WIDTH = 64


class TamperSettings(Section):
    """Tamper checks (config section [detection.tamper])."""

    enabled: bool = Field(True, description="Run the tamper checks.")
    check_every_s: float = Field(1.0, gt=0, le=10, description="Seconds between checks.")
    reference_s: float = Field(60.0, ge=1, le=3600, description="Time constant of the normal-view reference.")
    flat_std: float = Field(6.0, ge=0.5, le=50, description="Luma standard deviation below which the view is "
                                                            "flat (covered, sprayed, blinded).")
    defocus_ratio: float = Field(0.45, gt=0, lt=1, description="Contrast-normalised sharpness below this share "
                                                               "of the reference = defocused.")
    turned_similarity: float = Field(0.35, ge=-1, lt=1, description="Edge-layout correlation with the reference "
                                                                   "below this = turned away.")


@dataclass(frozen=True, slots=True)
class _View:
    std: float
    sharpness: float
    edges: np.ndarray


def _normalised(edges: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm copy, so the dot product of two of them is their correlation."""
    edges = cv2.subtract(edges, cv2.mean(edges)[0])
    return cv2.multiply(edges, 1.0 / (cv2.norm(edges) + 1e-6))


def _view(luma: np.ndarray) -> _View:
    height = max(8, round(luma.shape[0] * TAMPER_WIDTH / luma.shape[1]))
    small = cv2.resize(luma, (TAMPER_WIDTH, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    std = float(cv2.meanStdDev(small)[1][0, 0])
    lap = cv2.Laplacian(small, cv2.CV_32F)
    # dividing by contrast makes sharpness insensitive to the light level (lights off is not defocus)
    sharpness = cv2.norm(lap, cv2.NORM_L1) / lap.size / (std + 1.0)
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1)
    return _View(std, sharpness, _normalised(cv2.GaussianBlur(cv2.magnitude(gx, gy), (5, 5), 0)))


class TamperDetector:
    """Keeps the reference view and the current verdict: None, 'covered', 'defocused' or 'turned'."""

    def __init__(self, settings: TamperSettings) -> None:
        self.settings = settings
        self.state: str | None = None
        self._ref: _View | None = None
        self._next_check = float("-inf")
        self._suspect_since = 0.0        #: when the current verdict (state) began
        self._last_ts: float | None = None

    def update(self, luma: np.ndarray, ts: float) -> str | None:
        if not self.settings.enabled or ts < self._next_check:
            return self.state
        self._next_check = ts + self.settings.check_every_s
        view = _view(luma)
        if self._ref is None or self._ref.edges.shape != view.edges.shape:
            self._ref, self._last_ts = view, ts
            return self.state
        suspect = self._classify(view)
        if suspect != self.state:
            self.state, self._suspect_since = suspect, ts
        if suspect is None:
            self._learn(view, ts)
        elif ts - self._suspect_since >= self.settings.reference_s:
            # a change that lasts this long is the new normal view (it has been reported for a long time)
            self.state, self._ref = None, view
        return self.state

    def _classify(self, view: _View) -> str | None:
        s, ref = self.settings, self._ref
        if view.std < s.flat_std <= ref.std:
            return "covered"
        if view.std >= s.flat_std and ref.sharpness > 0 and view.sharpness < s.defocus_ratio * ref.sharpness:
            return "defocused"
        if view.std >= s.flat_std and float(view.edges.ravel() @ ref.edges.ravel()) < s.turned_similarity:
            return "turned"
        return None

    def _learn(self, view: _View, ts: float) -> None:
        dt = max(0.0, ts - (self._last_ts if self._last_ts is not None else ts))
        self._last_ts = ts
        rate = min(1.0, dt / self.settings.reference_s)
        ref = self._ref
        edges = _normalised(cv2.addWeighted(ref.edges, 1 - rate, view.edges, rate, 0.0))
        self._ref = _View((1 - rate) * ref.std + rate * view.std,
                          (1 - rate) * ref.sharpness + rate * view.sharpness, edges)
