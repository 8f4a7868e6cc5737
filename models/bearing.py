"""Bearings (degrees clockwise from north) and named sectors of the 360° around the unit.

Pure: numbers in, numbers out. The image convention used throughout: an "image angle" is measured clockwise
from the image's up direction (-y) around a centre point, in degrees [0, 360).
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

from pydantic import Field, model_validator

from common.settings import Section

Mount = Literal["down", "up"]


class SectorSettings(Section):
    """One named slice of the horizon, from start_deg clockwise to end_deg (may wrap through north)."""

    name: str = Field(..., min_length=1, max_length=64, description="Sector name carried in alarms, e.g. 'gate'.")
    start_deg: float = Field(..., ge=0, lt=360, description="Bearing where the sector starts (clockwise from north).")
    end_deg: float = Field(..., ge=0, le=360, description="Bearing where it ends; smaller than start = wraps north.")

    @model_validator(mode="after")
    def _not_empty(self) -> "SectorSettings":
        if self.start_deg == self.end_deg % 360 and self.end_deg != 360:
            raise ValueError(f"sector {self.name!r}: start_deg equals end_deg (empty sector)")
        return self

    @property
    def width_deg(self) -> float:
        return (self.end_deg - self.start_deg) % 360 or 360.0

    def contains(self, bearing_deg: float) -> bool:
        return (bearing_deg - self.start_deg) % 360 < self.width_deg


def norm_deg(angle: float) -> float:
    """Angle folded into [0, 360)."""
    folded = angle % 360.0
    return 0.0 if folded >= 360.0 else folded


def angle_diff(a: float, b: float) -> float:
    """Smallest absolute difference between two angles, in [0, 180]."""
    return abs((a - b + 180.0) % 360.0 - 180.0)


def image_angle(x: float, y: float, cx: float, cy: float) -> float:
    """Angle of point (x, y) around (cx, cy), clockwise from the image's up direction."""
    return norm_deg(math.degrees(math.atan2(x - cx, -(y - cy))))


def bearing_from_image_angle(angle: float, north_offset_deg: float, mount: Mount) -> float:
    """Image angle -> bearing. A camera looking up sees the world mirrored, so its angles run the other way."""
    relative = angle - north_offset_deg
    return norm_deg(relative if mount == "down" else -relative)


def image_angle_from_bearing(bearing: float, north_offset_deg: float, mount: Mount) -> float:
    """Inverse of bearing_from_image_angle."""
    return norm_deg(north_offset_deg + (bearing if mount == "down" else -bearing))


def point_bearing(x: float, y: float, cx: float, cy: float, north_offset_deg: float = 0.0,
                  mount: Mount = "down") -> float:
    """Bearing of an image point of a fisheye centred on (cx, cy); north appears north_offset_deg clockwise from
    the image's up direction (as seen in the image)."""
    return bearing_from_image_angle(image_angle(x, y, cx, cy), north_offset_deg, mount)


def sectors_at(sectors: Sequence[SectorSettings], bearing_deg: float) -> list[str]:
    """Names of the sectors holding a bearing, in config order."""
    return [sector.name for sector in sectors if sector.contains(bearing_deg)]


def sectors_in_span(sectors: Sequence[SectorSettings], start_deg: float, width_deg: float) -> list[str]:
    """Names of the sectors overlapping the arc from start_deg clockwise over width_deg."""
    width = min(max(width_deg, 0.0), 360.0)
    names = []
    for sector in sectors:
        # Two arcs overlap when either one's start lies inside the other.
        sector_start_inside = (sector.start_deg - start_deg) % 360 <= width
        if sector.contains(start_deg) or sector_start_inside:
            names.append(sector.name)
    return names


def check_sector_names(sectors: Sequence[SectorSettings]) -> None:
    """Raise ValueError if two sectors share a name (alarms would be ambiguous)."""
    seen: set[str] = set()
    for sector in sectors:
        if sector.name in seen:
            raise ValueError(f"sector name {sector.name!r} is used twice")
        seen.add(sector.name)
