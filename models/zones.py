"""Zones in normalised image coordinates: detection zones (own sensitivity and minimum size), ignore masks and
privacy masks. Rasterised once per detection-image size.

Pure: settings and an image shape in, arrays out.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field, ValidationInfo, field_validator

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
    person_height_far: float | None = Field(
        None, gt=0, le=1, description="Detection zones: height of a person standing at the zone's far (top) edge, "
                                      "as a share of the image height; with person_height_near it replaces the "
                                      "image-wide person_height line inside this zone (the size check).")
    person_height_near: float | None = Field(
        None, gt=0, le=1, validate_default=True,
        description="Detection zones: height of a person standing at the zone's near (bottom) edge, as a share "
                    "of the image height (set with person_height_far).")

    @field_validator("person_height_near")
    @classmethod
    def _near_not_smaller(cls, near: float | None, info: ValidationInfo) -> float | None:
        if "person_height_far" not in info.data:
            return near  # far was refused already: that is the error to show
        far = info.data["person_height_far"]
        if (near is None) != (far is None):
            raise ValueError("set person_height_far and person_height_near together, or neither")
        if near is not None and far is not None and near < far:
            raise ValueError(f"a person at the near edge ({near}) cannot look smaller than at the far edge ({far})")
        return near

    @field_validator("polygon", mode="before")
    @classmethod
    def _enough_corners(cls, polygon: object) -> object:
        """Said in the installer's words (the page shows it beside the corner count), not as a tuple's length."""
        if isinstance(polygon, (list, tuple)) and len(polygon) < 3:
            raise ValueError(f"a zone needs at least 3 corners, got {len(polygon)}")
        return polygon

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
                 min_area_px: float, person_area: float = 0.0) -> None:
        """person_area: a person's area in px per px² of their height (their width times the share of their box
        a silhouette fills); with it a zone's far-edge person height gives the zone's smallest object."""
        self.zones = zones
        self.detect = [zone for zone in zones if zone.kind == "detect"]
        self.labels = np.zeros(shape, np.uint8)      # 0 = no detection zone, i = self.detect[i - 1]
        self.keep = np.full(shape, 255, np.uint8)    # 0 where ignore/privacy masks blank detection
        self.threshold = np.full(shape, float(threshold), np.float32)
        self.min_area_px = [_zone_min_area(zone, shape, min_area_px, person_area) for zone in self.detect]
        # (far-edge row, near-edge row, person px there) of zones that set their own person heights
        self._heights = {zone.name: _height_line(zone, shape[0]) for zone in self.detect
                         if zone.person_height_far is not None and zone.person_height_near is not None}
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

    def person_px(self, zone: str, foot_y: float) -> float | None:
        """Height in px of a person whose feet are at row foot_y of detection zone `zone`, from the heights set
        at its far and near edges (linear in between, held beyond them); None when the zone sets none."""
        line = self._heights.get(zone)
        if line is None:
            return None
        top, bottom, far_px, near_px = line
        share = 0.0 if bottom <= top else min(1.0, max(0.0, (foot_y - top) / (bottom - top)))
        return far_px + (near_px - far_px) * share


def _zone_min_area(zone: ZoneSettings, shape: tuple[int, int], default_px: float, person_area: float) -> float:
    """A detection zone's smallest object in px: its own min_area, else the person at its far edge, else the
    image-wide smallest object."""
    if zone.min_area is not None:
        return zone.min_area * shape[0] * shape[1]
    if zone.person_height_far is not None and person_area > 0:
        return max(2.0, person_area * (zone.person_height_far * shape[0]) ** 2)
    return default_px


def _height_line(zone: ZoneSettings, rows: int) -> tuple[float, float, float, float]:
    ys = [y * (rows - 1) for _x, y in zone.polygon]  # rows as _fill rasterises them
    return min(ys), max(ys), zone.person_height_far * rows, zone.person_height_near * rows


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
