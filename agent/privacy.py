"""Privacy masks blacked out of the full-size image before anything is recorded or sent."""

from __future__ import annotations

import numpy as np

from models.zones import ZoneSettings, privacy_mask


class PrivacyFilter:
    """Blanks every `privacy` zone of the images it is given; the mask is rasterised once per image size."""

    def __init__(self, zones: tuple[ZoneSettings, ...]) -> None:
        self.zones = zones
        self.active = any(zone.kind == "privacy" for zone in zones)
        self._masks: dict[tuple[int, int], np.ndarray] = {}

    def apply(self, image: np.ndarray) -> np.ndarray:
        """A copy of `image` with the privacy zones black (the original is left alone)."""
        if not self.active:
            return image
        shape = image.shape[:2]
        if shape not in self._masks:
            self._masks[shape] = privacy_mask(self.zones, shape) > 0
        blanked = image.copy()
        blanked[self._masks[shape]] = 0
        return blanked
