"""Privacy masks blacked out of the full-size image before anything is recorded or sent."""

from __future__ import annotations

import cv2
import numpy as np

from models.zones import ZoneSettings


class PrivacyFilter:
    """Blanks every `privacy` zone (normalised polygons) of the images it is given; rasterised once per size."""

    def __init__(self, zones: tuple[ZoneSettings, ...]) -> None:
        self.polygons = [zone.polygon for zone in zones if zone.kind == "privacy"]
        self._masks: dict[tuple[int, int], np.ndarray] = {}

    @property
    def active(self) -> bool:
        return bool(self.polygons)

    def _mask(self, height: int, width: int) -> np.ndarray:
        mask = self._masks.get((height, width))
        if mask is None:
            mask = np.zeros((height, width), np.uint8)
            for polygon in self.polygons:
                points = np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in polygon], np.int32)
                cv2.fillPoly(mask, [points], 255)
            self._masks[(height, width)] = mask = mask.astype(bool)
        return mask

    def apply(self, image: np.ndarray) -> np.ndarray:
        """A copy of `image` with the privacy zones black (the original is left alone)."""
        if not self.polygons:
            return image
        blanked = image.copy()
        blanked[self._mask(*image.shape[:2])] = 0
        return blanked
