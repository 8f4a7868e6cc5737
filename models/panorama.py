"""360° coverage: unwrap a fisheye (or join N fixed cameras) into a panoramic strip, and map strip boxes back.

The strip's columns run linearly in bearing from 0° (north) at the left edge, clockwise, to 360° at the right
edge, so a box's bearing is read straight off its columns. Rows are ordered so people stand upright: looking
down, a person's head points to the rim, so the rim is the top row; looking up, heads point to the centre
(zenith), so the centre is the top row. Remap tables are computed once per source size.

Coordinates are continuous pixels: pixel i covers [i, i+1), so its centre is i + 0.5 (boxes from the detector
cover [x, x+w)). Pure: arrays in, results out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import cv2
import numpy as np
from pydantic import Field, model_validator

from common.settings import Section
from models.bearing import Mount, SectorSettings, check_sector_names, norm_deg, point_bearing, sectors_in_span
from models.motion import Box

#: points sampled along each side of a strip box when its outline is mapped back to the source image
_OUTLINE_STEPS = 8


class CameraViewSettings(Section):
    """One of N fixed (rectilinear) cameras around the pole, for kind = "multi"."""

    name: str = Field(..., min_length=1, max_length=64, description="Camera name, reported with its detections.")
    yaw_deg: float = Field(..., ge=0, lt=360, description="Bearing the camera's optical axis points to.")
    hfov_deg: float = Field(..., gt=10, lt=170, description="Horizontal field of view of the camera.")


class PanoramaSettings(Section):
    """360° geometry (config section [panorama])."""

    enabled: bool = Field(False, description="Unwrap frames into a panoramic strip before detection.")
    kind: Literal["fisheye", "multi"] = Field("fisheye", description="One 360° fisheye, or N fixed cameras.")
    centre_x: float = Field(0.5, ge=0, le=1, description="Fisheye circle centre, as a share of the image width.")
    centre_y: float = Field(0.5, ge=0, le=1, description="Fisheye circle centre, as a share of the image height.")
    radius: float = Field(1.0, gt=0.05, le=1.5,
                          description="Fisheye circle radius, as a share of half the shorter image side.")
    inner_radius: float = Field(0.1, ge=0, lt=0.95,
                                description="Share of the radius left out at the centre (straight below/above "
                                            "the unit: no useful bearing, heavily stretched when unwrapped).")
    fov_deg: float = Field(180.0, ge=90, le=280,
                           description="Lens field of view across the full circle (equidistant fisheye).")
    mount: Mount = Field("down", description="'down': ceiling/pole mount looking down; 'up': looking up "
                                             "(the image is mirrored, bearings run anticlockwise).")
    north_offset_deg: float = Field(0.0, ge=0, lt=360,
                                    description="Where north appears in the image: degrees clockwise from "
                                                "image-up (multi: added to every camera's yaw).")
    strip_width: int = Field(720, ge=64, le=8192, description="Detection strip pixels per 360° of bearing.")
    overlap_deg: float = Field(20.0, ge=0, le=90,
                               description="Bearings just past north repeated at the strip's right end, so a "
                                           "person standing at north is seen whole, not cut by the seam.")
    strip_height: int = Field(0, ge=0, le=4096,
                              description="Detection strip height in pixels; 0 = from the field of view, so "
                                          "strip pixels are about square in angle.")
    sectors: tuple[SectorSettings, ...] = Field((), description="Named sectors reported with every alarm.")
    cameras: tuple[CameraViewSettings, ...] = Field((), description="kind = 'multi': the fixed cameras.")

    @model_validator(mode="after")
    def _consistent(self) -> "PanoramaSettings":
        check_sector_names(self.sectors)
        if self.kind == "multi" and len(self.cameras) < 2:
            raise ValueError("panorama.kind 'multi' needs at least 2 entries in panorama.cameras")
        if self.kind == "fisheye" and self.cameras:
            raise ValueError("panorama.cameras is only used with kind = 'multi'")
        return self


@dataclass(frozen=True)
class Location:
    """Where a detection is around the unit."""

    bearing_deg: float                         #: bearing of the box centre, clockwise from north
    start_deg: float                           #: the box's bearing span starts here ...
    width_deg: float                           #: ... and runs clockwise this far
    sectors: tuple[str, ...]                   #: sectors the span touches
    image_box: tuple[float, float, float, float]  #: x, y, w, h in the source image (bounds of the outline)
    outline: np.ndarray = field(repr=False)    #: (N, 2) polygon in source-image pixels
    off_axis_deg: float | None = None          #: fisheye: angle of the box's bottom-centre from the optical axis
    camera: str | None = None                  #: multi: the camera the box lies in
    zone: str = ""                             #: the detection zone of the strip box ('' = whole strip)
    strip_box: tuple[int, int, int, int] | None = None  #: x, y, w, h of the box in the strip (the live view's)

    def scaled_box(self, factor: float) -> tuple[int, int, int, int]:
        """image_box in another resolution of the same image (e.g. luma -> recorded frame)."""
        x, y, w, h = (value * factor for value in self.image_box)
        return round(x), round(y), max(1, round(w)), max(1, round(h))

    def as_payload(self) -> dict:
        return {"bearing_deg": round(self.bearing_deg, 1), "span_deg": [round(self.start_deg, 1),
                                                                        round(self.width_deg, 1)],
                "sectors": list(self.sectors), **({"camera": self.camera} if self.camera else {})}


def merge_seam(boxes: Sequence[Box], period: int) -> list[Box]:
    """Clean up strip boxes around the north seam (period = strip columns per 360°).

    Boxes lying wholly in the repeated overlap (x >= period) duplicate what the strip's left end shows: dropped.
    A box at the left edge whose rows meet a box crossing (or reaching) column `period` is the same person cut
    by the seam: the two become one box running past `period`; its columns modulo period give its bearings.
    """
    kept = [b for b in boxes if b.x < period]
    left = [b for b in kept if b.x == 0]
    crossing = [b for b in kept if b.x + b.w >= period and b.x > 0]
    used: set[int] = set()
    merged: list[Box] = []
    for lbox in left:
        partner = next((r for r in crossing if id(r) not in used and _rows_overlap(lbox, r)), None)
        if partner is None:
            continue
        used.update((id(lbox), id(partner)))
        top = min(lbox.y, partner.y)
        bottom = max(lbox.y + lbox.h, partner.y + partner.h)
        right_end = max(partner.x + partner.w, period + lbox.w)
        merged.append(Box(partner.x, top, right_end - partner.x, bottom - top, max(lbox.area, partner.area),
                          zone=partner.zone))
    rest = [b for b in kept if id(b) not in used]
    return sorted(rest + merged, key=lambda box: -box.area)


def _rows_overlap(a: Box, b: Box) -> bool:
    return a.y < b.y + b.h and b.y < a.y + a.h


def _outline(box: Box) -> tuple[np.ndarray, np.ndarray]:
    """Points around a box's border (continuous strip coordinates), clockwise from the top-left corner."""
    t = np.linspace(0.0, 1.0, _OUTLINE_STEPS, endpoint=False)
    x0, y0, x1, y1 = box.x, box.y, box.x + box.w, box.y + box.h
    xs = np.concatenate([x0 + t * (x1 - x0), np.full_like(t, x1), x1 - t * (x1 - x0), np.full_like(t, x0)])
    ys = np.concatenate([np.full_like(t, y0), y0 + t * (y1 - y0), np.full_like(t, y1), y1 - t * (y1 - y0)])
    return xs, ys


def _bounds(points: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def _check_size(size: tuple[int, int], what: str) -> tuple[int, int]:
    width, height = int(size[0]), int(size[1])
    if width < 8 or height < 8:
        raise ValueError(f"{what} must be at least 8x8 pixels, got {width}x{height}")
    return width, height


class FisheyePanorama:
    """Unwraps one 360° fisheye image of a fixed size into a strip, and maps strip boxes back.

    strip_size, when given, is (columns per 360°, rows) and overrides the settings (e.g. a recording-size strip).
    """

    def __init__(self, settings: PanoramaSettings, source_size: tuple[int, int],
                 strip_size: tuple[int, int] | None = None) -> None:
        self.settings = settings
        self.source_size = _check_size(source_size, "fisheye source image")
        width, height = self.source_size
        self.cx = settings.centre_x * width
        self.cy = settings.centre_y * height
        self.r_outer = settings.radius * min(width, height) / 2.0
        self.r_inner = settings.inner_radius * self.r_outer
        period, height = _check_size(strip_size or self._default_strip_size(), "panorama strip")
        #: strip columns per 360° of bearing; the strip is wider by the repeated overlap
        self.period = period
        self.strip_size = (period + round(period * settings.overlap_deg / 360.0), height)
        self._map1, self._map2 = self._build_maps()

    def _default_strip_size(self) -> tuple[int, int]:
        width = self.settings.strip_width
        if self.settings.strip_height:
            return width, self.settings.strip_height
        # Equidistant lens: radius is linear in angle, so this keeps strip pixels square in degrees.
        span_deg = (1.0 - self.settings.inner_radius) * self.settings.fov_deg / 2.0
        return width, max(8, round(width * span_deg / 360.0))

    def _build_maps(self) -> tuple[np.ndarray, np.ndarray]:
        strip_w, strip_h = self.strip_size
        us, vs = np.meshgrid(np.arange(strip_w) + 0.5, np.arange(strip_h) + 0.5)
        xs, ys = self.strip_to_image(us, vs)
        # remap samples at pixel-index coordinates (pixel centre = integer); fixed-point maps remap faster.
        return cv2.convertMaps((xs - 0.5).astype(np.float32), (ys - 0.5).astype(np.float32), cv2.CV_16SC2)

    # -- geometry --------------------------------------------------------------------------------------------
    def bearing_at(self, u: np.ndarray | float) -> np.ndarray | float:
        """Bearing of a (continuous, possibly wrapped) strip column."""
        return np.mod(np.asarray(u, dtype=np.float64) * 360.0 / self.period, 360.0)

    def _radius_at(self, v):
        share = np.asarray(v, dtype=np.float64) / self.strip_size[1]
        if self.settings.mount == "up":
            share = 1.0 - share       # looking up: the horizon is at the rim, so the rim goes to the bottom
        return self.r_outer - share * (self.r_outer - self.r_inner)

    def strip_to_image(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        """Strip point(s) -> source image point(s)."""
        s = self.settings
        bearing = self.bearing_at(u)
        angle = np.radians(image_angle_from_bearing_array(bearing, s.north_offset_deg, s.mount))
        radius = self._radius_at(v)
        return self.cx + radius * np.sin(angle), self.cy - radius * np.cos(angle)

    def image_to_strip(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Source image point(s) -> strip point(s); v falls outside [0, height] off the unwrapped ring."""
        s = self.settings
        dx = np.asarray(x, dtype=np.float64) - self.cx
        dy = np.asarray(y, dtype=np.float64) - self.cy
        angle = np.degrees(np.arctan2(dx, -dy))
        relative = angle - s.north_offset_deg
        bearing = np.mod(relative if s.mount == "down" else -relative, 360.0)
        share = (self.r_outer - np.hypot(dx, dy)) / (self.r_outer - self.r_inner)
        if s.mount == "up":
            share = 1.0 - share
        return bearing * self.period / 360.0, share * self.strip_size[1]

    def point_bearing(self, x: float, y: float) -> float:
        """Bearing of a source-image point (no strip involved)."""
        return point_bearing(x, y, self.cx, self.cy, self.settings.north_offset_deg, self.settings.mount)

    def off_axis_deg(self, x: float, y: float) -> float:
        """Angle between the optical axis and the ray through a source-image point (equidistant lens)."""
        return math.hypot(x - self.cx, y - self.cy) / self.r_outer * self.settings.fov_deg / 2.0

    # -- frames and boxes ------------------------------------------------------------------------------------
    def unwrap(self, image: np.ndarray) -> np.ndarray:
        """Source image (grey or BGR) of source_size -> strip of strip_size."""
        height, width = image.shape[:2]
        if (width, height) != self.source_size:
            raise ValueError(f"panorama built for {self.source_size[0]}x{self.source_size[1]} images, "
                             f"got {width}x{height}")
        return cv2.remap(image, self._map1, self._map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def locate(self, box: Box) -> Location:
        """A strip box (possibly running past column `period`, see merge_seam) -> where it is."""
        xs, ys = self.strip_to_image(*_outline(box))
        outline = np.stack([xs, ys], axis=1)
        start = float(self.bearing_at(box.x))
        width = min(360.0, box.w * 360.0 / self.period)
        bottom_x, bottom_y = self.strip_to_image(box.x + box.w / 2.0, box.y + box.h)
        return Location(
            bearing_deg=norm_deg(start + width / 2.0), start_deg=start, width_deg=width,
            sectors=tuple(sectors_in_span(self.settings.sectors, start, width)), image_box=_bounds(outline),
            outline=outline, off_axis_deg=self.off_axis_deg(float(bottom_x), float(bottom_y)), zone=box.zone,
            strip_box=(box.x, box.y, box.w, box.h))


def image_angle_from_bearing_array(bearing, north_offset_deg: float, mount: Mount):
    """Vectorised models.bearing.image_angle_from_bearing."""
    bearing = np.asarray(bearing, dtype=np.float64)
    return np.mod(north_offset_deg + (bearing if mount == "down" else -bearing), 360.0)


class MultiPanorama:
    """N fixed rectilinear cameras around a pole joined into one strip of sectors, one slice per camera.

    Slices are ordered by yaw and each is resampled so its columns are linear in bearing (cylindrical), so a
    column's bearing is yaw - hfov/2 + share * hfov within its slice.
    """

    def __init__(self, settings: PanoramaSettings, source_size: tuple[int, int],
                 strip_size: tuple[int, int] | None = None) -> None:
        self.settings = settings
        self.source_size = _check_size(source_size, "camera image")
        self.views = sorted(settings.cameras, key=lambda view: view.yaw_deg)
        total_fov = sum(view.hfov_deg for view in self.views)
        width = (strip_size or (settings.strip_width, 0))[0]
        src_w, src_h = self.source_size
        height = (strip_size[1] if strip_size else settings.strip_height) or round(
            width * src_h / src_w / len(self.views))
        edges = np.round(np.cumsum([0.0] + [v.hfov_deg / total_fov * width for v in self.views])).astype(int)
        self.slices = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        self.period, height = _check_size((width, height), "panorama strip")
        self.strip_size = (width + round(width * settings.overlap_deg / 360.0), height)
        self._maps = [self._slice_maps(view, b - a) for view, (a, b) in zip(self.views, self.slices, strict=True)]

    def _focal(self, view: CameraViewSettings) -> float:
        return self.source_size[0] / 2.0 / math.tan(math.radians(view.hfov_deg) / 2.0)

    def _slice_maps(self, view: CameraViewSettings, slice_w: int):
        src_w, src_h = self.source_size
        us, vs = np.meshgrid(np.arange(slice_w) + 0.5, np.arange(self.strip_size[1]) + 0.5)
        offset = np.radians((us / slice_w - 0.5) * view.hfov_deg)
        xs = src_w / 2.0 + self._focal(view) * np.tan(offset)
        ys = vs * src_h / self.strip_size[1]
        return cv2.convertMaps((xs - 0.5).astype(np.float32), (ys - 0.5).astype(np.float32), cv2.CV_16SC2)

    def _slice_of(self, u: float) -> int:
        u = u % self.period
        return next(i for i, (a, b) in enumerate(self.slices) if a <= u < b)

    def bearing_at(self, u: float) -> float:
        index = self._slice_of(u)
        view, (a, b) = self.views[index], self.slices[index]
        share = (u % self.period - a) / (b - a)
        return norm_deg(view.yaw_deg + self.settings.north_offset_deg + (share - 0.5) * view.hfov_deg)

    def unwrap(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """One image per camera, in settings.cameras order -> strip."""
        if len(images) != len(self.settings.cameras):
            raise ValueError(f"panorama has {len(self.settings.cameras)} cameras, got {len(images)} images")
        by_name = {view.name: image for view, image in zip(self.settings.cameras, images, strict=True)}
        parts = []
        for view, (map1, map2) in zip(self.views, self._maps, strict=True):
            image = by_name[view.name]
            if (image.shape[1], image.shape[0]) != self.source_size:
                raise ValueError(f"camera {view.name!r}: expected {self.source_size[0]}x{self.source_size[1]}, "
                                 f"got {image.shape[1]}x{image.shape[0]}")
            parts.append(cv2.remap(image, map1, map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT))
        parts.append(parts[0][:, : self.strip_size[0] - self.period])   # the repeated overlap past the seam
        return np.hstack(parts)

    def locate(self, box: Box) -> Location:
        """A strip box -> bearing, sectors, and its box in the camera image holding the box centre."""
        centre = box.x + box.w / 2.0
        index = self._slice_of(centre)
        view, (a, b) = self.views[index], self.slices[index]
        start = self.bearing_at(box.x)
        width = min(360.0, sum(self._slice_span(box, i) for i in range(len(self.views))))
        xs, ys = _outline(box)
        # Bring a box wrapped past the seam back beside its centre's slice, then keep it inside that slice.
        xs = np.clip(xs - (centre // self.period) * self.period, a, b)
        offset = np.radians(((xs - a) / (b - a) - 0.5) * view.hfov_deg)
        src_w, src_h = self.source_size
        outline = np.stack([src_w / 2.0 + self._focal(view) * np.tan(offset),
                            ys * src_h / self.strip_size[1]], axis=1)
        return Location(bearing_deg=self.bearing_at(centre), start_deg=start, width_deg=width,
                        sectors=tuple(sectors_in_span(self.settings.sectors, start, width)),
                        image_box=_bounds(outline), outline=outline, camera=view.name, zone=box.zone,
                        strip_box=(box.x, box.y, box.w, box.h))

    def _slice_span(self, box: Box, index: int) -> float:
        """Degrees of the box lying in one slice (a box may cross slices, and the seam)."""
        a, b = self.slices[index]
        covered = 0.0
        for shift in (0, self.period):
            covered += max(0.0, min(box.x + box.w, b + shift) - max(box.x, a + shift))
        return covered / (b - a) * self.views[index].hfov_deg


class PanoramaView:
    """The pipeline's helper: unwraps each detection image (building the maps once per image size), and turns
    the detector's strip boxes into Locations plus boxes back in the detection image (luma pixels)."""

    def __init__(self, settings: PanoramaSettings) -> None:
        self.settings = settings
        self.panorama: FisheyePanorama | MultiPanorama | None = None

    def unwrap(self, luma: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Detection image (fisheye), or one per camera (multi) -> strip."""
        first = luma if isinstance(luma, np.ndarray) else luma[0]
        size = (first.shape[1], first.shape[0])
        if self.panorama is None or self.panorama.source_size != size:
            self.panorama = make_panorama(self.settings, size)
        return self.panorama.unwrap(luma)

    def locate(self, strip_boxes: Sequence[Box]) -> list[Location]:
        """Strip boxes of the last unwrapped image -> one Location per object (seam halves joined)."""
        if self.panorama is None:
            raise ValueError("PanoramaView.locate called before unwrap")
        return [self.panorama.locate(box) for box in merge_seam(strip_boxes, self.panorama.period)]

    @staticmethod
    def source_boxes(locations: Sequence[Location]) -> tuple[Box, ...]:
        """Locations as detector Boxes in detection-image pixels (for payload boxes and snapshot drawing)."""
        return tuple(Box(*loc.scaled_box(1.0), round(loc.image_box[2] * loc.image_box[3]), zone=loc.zone)
                     for loc in locations)


def alarm_fields(locations: Sequence[Location]) -> dict:
    """What an alarm carries about where: each object's bearing (largest object first, as given) and the
    sectors they touch, each named once."""
    sectors: list[str] = []
    for location in locations:
        sectors += [name for name in location.sectors if name not in sectors]
    return {"bearings_deg": [round(location.bearing_deg, 1) for location in locations], "sectors": sectors}


def make_panorama(settings: PanoramaSettings, source_size: tuple[int, int],
                  strip_size: tuple[int, int] | None = None) -> FisheyePanorama | MultiPanorama:
    """The panorama for the configured kind, built for frames of source_size (width, height)."""
    kind = FisheyePanorama if settings.kind == "fisheye" else MultiPanorama
    return kind(settings, source_size, strip_size)


def scaled_strip_size(panorama: FisheyePanorama | MultiPanorama, factor: float) -> tuple[int, int]:
    """The strip_size argument (columns per 360°, rows) matching a source `factor` times larger, e.g. to
    unwrap the recorded frame consistently with the detection strip."""
    return max(8, round(panorama.period * factor)), max(8, round(panorama.strip_size[1] * factor))


__all__ = ["CameraViewSettings", "FisheyePanorama", "Location", "MultiPanorama", "PanoramaSettings",
           "PanoramaView", "SectorSettings", "alarm_fields", "make_panorama", "merge_seam", "scaled_strip_size"]
