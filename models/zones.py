"""Zones in normalised image coordinates: detection zones (own sensitivity and minimum size), ignore masks and
privacy masks. Rasterised once per detection-image size.

Pure: settings and an image shape in, arrays out.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field, field_validator

from common.settings import Section

ZoneKind = Literal["detect", "ignore", "privacy"]


class ZoneSettings(Section):
    """One polygon. `detect`: alarms only count inside detection zones (when any exist) and name the zone.
    `ignore`: changes there are never looked at (a road beyond the fence, a flag). `privacy`: ignored for
    detection too, and meant to be blanked in recordings (neighbour's window)."""

    name: str = Field(..., min_length=1, max_length=64, description="Zone name carried in alarms, e.g. 'yard'.")
    kind: ZoneKind = Field("detect", description="'detect', 'ignore' or 'privacy'.")
    polygon: tuple[tuple[float, float], ...] = Field(
        ..., min_length=3, description="Corners as [x, y] in 0..1 of image width/height, in order.")
    sensitivity: float = Field(1.0, ge=0.25, le=4.0,
                               description="Detection zones: >1 = more sensitive (lower threshold), <1 = less.")
    min_area: float | None = Field(None, gt=0, le=1,
                                   description="Detection zones: smallest object as a share of the image area "
                                               "(default: detection.min_area).")

    @field_validator("polygon")
    @classmethod
    def _normalised(cls, polygon: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        for x, y in polygon:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"polygon corner ({x}, {y}) is outside 0..1 (coordinates are normalised)")
        return polygon


def _fill(shape: tuple[int, int], polygon: tuple[tuple[float, float], ...], value: int, out: np.ndarray) -> None:
    height, width = shape
    points = np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in polygon], np.int32)
    cv2.fillPoly(out, [points], value)


class ZoneMap:
    """Zones rasterised for one image size."""

    def __init__(self, zones: tuple[ZoneSettings, ...], shape: tuple[int, int], threshold: float,
                 min_area_px: float) -> None:
        self.zones = zones
        self.detect = [zone for zone in zones if zone.kind == "detect"]
        self.labels = np.zeros(shape, np.uint8)      # 0 = no detection zone, i = self.detect[i - 1]
        self.keep = np.full(shape, 255, np.uint8)    # 0 where ignore/privacy masks blank detection
        self.threshold = np.full(shape, float(threshold), np.float32)
        self.min_area_px = [min_area_px if zone.min_area is None else zone.min_area * shape[0] * shape[1]
                            for zone in self.detect]
        for index, zone in enumerate(self.detect, start=1):
            _fill(shape, zone.polygon, index, self.labels)
            region = np.zeros(shape, np.uint8)
            _fill(shape, zone.polygon, 1, region)
            self.threshold[region > 0] = threshold / zone.sensitivity
        for zone in zones:
            if zone.kind != "detect":  # ignore and privacy zones; recordings are blanked by privacy_mask()
                _fill(shape, zone.polygon, 0, self.keep)
        self.masks_anything = bool(np.any(self.keep == 0))

    def zone_at(self, x: float, y: float) -> tuple[str | None, float | None]:
        """(zone name, its min area px) at a point; (None, None) outside every detection zone.
        Without detection zones the whole image counts: ("", None)."""
        if not self.detect:
            return "", None
        row = min(max(int(y), 0), self.labels.shape[0] - 1)
        col = min(max(int(x), 0), self.labels.shape[1] - 1)
        label = int(self.labels[row, col])
        if label == 0:
            return None, None
        return self.detect[label - 1].name, self.min_area_px[label - 1]


def privacy_mask(zones: tuple[ZoneSettings, ...], shape: tuple[int, int]) -> np.ndarray | None:
    """0/255 mask of the privacy zones for an image of `shape` (any size: recordings are full-size), or None when
    there are none. The recorder blanks these pixels."""
    private = [zone for zone in zones if zone.kind == "privacy"]
    if not private:
        return None
    out = np.zeros(shape[:2], np.uint8)
    for zone in private:
        _fill(shape[:2], zone.polygon, 255, out)
    return out
