"""The live view of a 360° unit: the colour frame unwrapped like the detection strip (so zones drawn on it are
in the detector's own coordinates), its detections as strip boxes, and the bearings and sector names along it.

The strip is unwrapped straight at about the live view's width, from the frame downscaled first: a few
milliseconds a shown frame, and nothing while nobody watches (web/live.py calls it only then).
"""

from __future__ import annotations

import cv2
import numpy as np

from models.panorama import Location, PanoramaView, make_panorama, scaled_strip_size

#: bearings marked along the strip, and how they are written
COMPASS = {0: "N", 45: "NE", 90: "E", 135: "SE", 180: "S", 225: "SW", 270: "W", 315: "NW"}


class PanoramaPicture:
    def __init__(self, view: PanoramaView, width: int) -> None:
        self.view = view        # the analyzer's: its panorama is built for the detection image
        self.width = width      # the live view's width in pixels
        self._key: tuple | None = None
        self._panorama = None
        self._scale: dict | None = None

    def picture(self, image: np.ndarray) -> np.ndarray | None:
        """The frame's strip at about the live view's width (None before the analyzer's first unwrap)."""
        detection = self.view.panorama
        if detection is None:
            return None
        cameras = len(self.view.settings.cameras) if self.view.settings.kind == "multi" else 1
        factor = min(self.width / detection.strip_size[0], image.shape[1] / cameras / detection.source_size[0])
        source = (max(8, round(detection.source_size[0] * factor)), max(8, round(detection.source_size[1] * factor)))
        key = (id(detection), source)
        if key != self._key:  # once per detection geometry: the remap tables and the ruler
            self._panorama = make_panorama(self.view.settings, source, scaled_strip_size(detection, factor))
            self._scale = ruler(detection, self.view.settings.sectors)
            self._key = key
        small = _shrink(image, (source[0] * cameras, source[1]))
        return self._panorama.unwrap(np.hsplit(small, cameras) if cameras > 1 else small)

    def scale(self) -> dict | None:
        """The ruler for the page (bearings and sectors as shares of the strip's width), once a picture was made."""
        return self._scale

    def boxes(self, locations: tuple[Location, ...]) -> list[dict]:
        """The detections as boxes on the strip, normalised to its size."""
        detection = self.view.panorama
        if detection is None:
            return []
        width, height = detection.strip_size
        return [{"x": loc.strip_box[0] / width, "y": loc.strip_box[1] / height, "w": loc.strip_box[2] / width,
                 "h": loc.strip_box[3] / height, "zone": loc.zone, "bearing_deg": round(loc.bearing_deg, 1)}
                for loc in locations if loc.strip_box is not None]


def _shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A colour image at `size`: exact halvings first (a 2x2 box average either way, and ~5x cheaper than one
    INTER_AREA from full size, as in drivers/camera/scale.py), then one INTER_AREA to the size."""
    while image.shape[1] >= 2 * size[0] and image.shape[0] >= 2 * size[1]:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    if (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def ruler(panorama, sectors) -> dict:
    """Where each compass point and each named sector lies along the strip (shares of its width): the strip's
    columns are read for their bearing, so the fisheye's linear strip and the joined cameras' slices alike."""
    width, height = panorama.strip_size
    bearings = [float(panorama.bearing_at(u + 0.5)) for u in range(width)]
    ticks = []
    edges = [float(panorama.bearing_at(u)) for u in range(width + 1)]
    for u in range(width):  # a compass point lies in the column whose bearings run past it
        step = (edges[u + 1] - edges[u]) % 360
        ticks += [{"x": u / width, "label": label} for degrees, label in COMPASS.items()
                  if (degrees - edges[u]) % 360 < step]
    runs = []
    for sector in sectors:
        inside = [sector.contains(bearing) for bearing in bearings]
        start = None
        for u, flag in enumerate(inside + [False]):
            if flag and start is None:
                start = u
            elif not flag and start is not None:
                runs.append({"name": sector.name, "x0": start / width, "x1": u / width})
                start = None
    return {"ticks": ticks, "sectors": runs, "aspect": width / height}
