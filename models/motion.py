"""Intrusion motion detection on the small luma image.

Stages: blur -> difference from a per-pixel background -> adaptive threshold (per-pixel nuisance activity) ->
clean-up -> blobs -> tracking. A frame counts as intrusion motion only when a tracked object has *travelled*
(foliage and flicker stay in place), is big enough and lies in a detection zone. A change of light is compared
through a fitted tone curve (models/illumination.py); a change of view no light explains (camera knocked, lights
switched on in a dark room) re-learns the background and is reported as `scene_change` (the tracker starts afresh,
nothing goes blind; while the light goes on settling, unevenly, the view is compared through the local light);
stationary changes (moved chair, parked car) are absorbed into the background.

Pure: arrays and frame times in, results out. No clocks, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from common.settings import Section
from models.background import BackgroundModel
from models.focus import edge_width
from models.illumination import compensated, locally_compensated, tone_curve
from models.tamper import TamperDetector, TamperSettings
from models.tracking import Track, Tracker, TrackerParams
from models.zones import ZoneMap, ZoneSettings

#: frame rate assumed when process() is called without frame times
DEFAULT_FPS = 10.0
#: most blobs tracked per frame (largest first); keeps the per-frame cost bounded in heavy foliage
MAX_BLOBS = 16
#: the background is learnt on every 2nd frame, nuisance levels on every 4th (with the elapsed time)
BACKGROUND_EVERY = 2
NUISANCE_EVERY = 4
#: edge width (px at detection size, and as a share of the object's height) beyond which an object is out of
#: focus: people measure ~2-3 px near or far, a moth near the lens under IR 8-20 px (see models/focus.py)
OUT_OF_FOCUS_PX = 6.0
OUT_OF_FOCUS_SHARE = 0.12
#: a counted object's edge width is measured on its first frame and then every FOCUS_EVERY-th
FOCUS_EVERY = 3
#: the 5x5 restore dilation makes a blob this many pixels taller than the object
RESTORE_MARGIN = 4


class MotionSettings(Section):
    """Detection settings (config section [detection])."""

    threshold: int = Field(18, ge=1, le=255, description="Luma difference (0-255) that marks a still pixel as "
                                                         "changed; busy pixels get more (see activity_gain).")
    activity_gain: float = Field(2.5, ge=0, le=20, description="Extra threshold per unit of a pixel's learned "
                                                               "nuisance activity (foliage, water, noise).")
    activity_s: float = Field(4.0, gt=0, le=600, description="Time constant (s) of the nuisance-activity learning.")
    background_s: float = Field(4.0, gt=0, le=600, description="Time constant (s) of background learning.")
    absorb_s: float = Field(6.0, gt=0, le=3600, description="Stationary change is absorbed into the background "
                                                            "after this many seconds (moved chair, parked car).")
    startup_s: float = Field(3.0, ge=0, le=600, description="Seconds of fast learning, without alarms, after "
                                                            "start-up (learns the scene and where nuisance is).")
    settle_s: float = Field(1.5, ge=0, le=60, description="Seconds of fast background learning after a scene "
                                                          "change (what comes to rest is taken in at once); "
                                                          "objects are tracked and count meanwhile.")
    light_change: float = Field(0.25, gt=0, le=5, description="Relative change of mean brightness from the "
                                                              "background that may mean the light changed.")
    light_share: float = Field(0.2, gt=0, le=1, description="Changed share of the image from which a light "
                                                            "change is considered.")
    scene_change_share: float = Field(0.8, gt=0, le=1, description="Changed share of the image that means the "
                                                                    "whole scene changed (lights, camera moved).")
    blur: int = Field(1, ge=1, le=31, description="Odd Gaussian kernel size applied before differencing; 1 = none, "
                                                   "as the area downscale to detection size already averages noise "
                                                   "away (raise it for noisy input used at native size).")
    person_height: float = Field(0.03, gt=0, le=1, description="Height of the smallest person the unit must see "
                                                               "(at the far edge of the zone), as a share of the "
                                                               "image height; sets the smallest object and the "
                                                               "clean-up kernel (0.03 = 22 px at 720 rows).")
    person_height_near: float = Field(0.45, gt=0, le=1, description="Height of a person standing at the bottom "
                                                                    "edge of the image, as a share of the image "
                                                                    "height (the expected height in between is "
                                                                    "interpolated; used to tell animals apart).")
    animals: Literal["ignore", "report"] = Field("ignore", description="Objects classed as animals never count "
                                                                        "as intrusion motion; 'report' lists them "
                                                                        "in MotionResult.animals.")
    person_check: bool = Field(True, description="Look again at the full-size frame with OpenCV's built-in "
                                                 "HOG people detector (agent/person_verify.py): an alarm's "
                                                 "class becomes 'person' when it confirms one, and an object "
                                                 "shaped like an animal that it confirms twice counts as an "
                                                 "intrusion. It never vetoes an object (a far person at night "
                                                 "is too small for it).")
    min_area: float | None = Field(None, gt=0, le=1, description="Smallest object, as a share of the image area "
                                                                 "(default: from person_height).")
    max_area: float = Field(0.85, gt=0, le=1, description="Largest object, as a share of the image area.")
    min_height: float = Field(0.0, ge=0, le=1, description="Smallest object height, as a share of image height.")
    large_object: float = Field(0.25, gt=0, le=1, description="An object covering this share of the image counts "
                                                              "without travelling (someone right at the camera).")
    travel: float = Field(0.06, gt=0, le=1, description="Net distance an object must travel to count, as a share "
                                                        "of the image height.")
    travel_heights: float = Field(1.0, gt=0, le=20, description="A small object counts once it has travelled "
                                                                "this many of its own heights (at least the "
                                                                "smallest person's), if that is less than travel.")
    patient_s: float = Field(1.5, gt=0, le=60, description="An object followed this long without breaking up "
                                                           "needs only patient_travel of its travel, less the "
                                                           "longer it is held (a far person "
                                                           "at night moves a pixel or two a second).")
    patient_travel: float = Field(0.5, gt=0, le=1, description="Share of the travel a patiently followed object "
                                                               "needs (see patient_s).")
    straightness: float = Field(0.3, ge=0, le=1, description="Net travel / path length needed to count: swaying "
                                                             "things move a lot but get nowhere.")
    min_track_frames: int = Field(5, ge=1, le=100, description="Frames an object must be seen before it counts.")
    nuisance_s: float = Field(20.0, gt=0, le=3600, description="Time constant (s) of learning how often each "
                                                               "pixel is foreground (busy regions need more travel).")
    nuisance_gain: float = Field(10.0, ge=0, le=100, description="Travel multiplier per unit of a region's "
                                                                "foreground frequency.")
    activity_demand: float = Field(2.0, ge=0, le=20, description="Travel multiplier per unit of a region's "
                                                                 "learnt activity above half the threshold.")
    still_s: float = Field(2.0, ge=0, le=600, description="A counted object at rest this long stops counting.")
    track_gap_s: float = Field(0.5, ge=0, le=10, description="An object unseen this long is forgotten.")
    zones: tuple[ZoneSettings, ...] = Field((), description="Detection zones and ignore/privacy masks "
                                                            "([[detection.zones]]).")
    tamper: TamperSettings = Field(TamperSettings(), description="Tamper checks ([detection.tamper]).")

    @model_validator(mode="after")
    def _consistent(self) -> "MotionSettings":
        if self.min_area is not None and self.min_area >= self.max_area:
            raise ValueError(f"min_area ({self.min_area}) must be smaller than max_area ({self.max_area})")
        if not (self.min_area or 0.0) <= self.large_object <= self.max_area:
            raise ValueError(f"large_object ({self.large_object}) must lie between min_area and max_area")
        if self.blur % 2 == 0:
            raise ValueError(f"blur must be an odd kernel size, got {self.blur}")
        names = [zone.name for zone in self.zones]
        if len(names) != len(set(names)):
            raise ValueError(f"zone names must be unique, got {names}")
        return self


#: a person's width and the share of their box a thresholded silhouette fills, relative to their height
PERSON_ASPECT = 0.4
PERSON_FILL = 0.5


def object_sizes(settings: MotionSettings, shape: tuple[int, int]) -> tuple[float, int]:
    """(smallest object area in px, clean-up kernel width in px) for a detection image of `shape`.

    Both follow from the smallest person the unit must see: a far person is a few pixels wide after the downscale,
    and a 3x3 erode (or a minimum area meant for near objects) would wipe them out. Below 3 px of person width the
    erode is a 1x3 vertical one: it still removes speckle but keeps an upright figure one pixel wide."""
    height, width = shape
    person_px = settings.person_height * height
    derived = PERSON_ASPECT * PERSON_FILL * person_px ** 2
    min_px = derived if settings.min_area is None else settings.min_area * height * width
    kernel_w = 3 if PERSON_ASPECT * person_px >= 3 else 1
    return max(2.0, min_px), kernel_w


@dataclass(frozen=True, slots=True)
class Box:
    """A blob's bounding box in detection-image pixels, and the detection zone it is in ('' = whole image)."""

    x: int
    y: int
    w: int
    h: int
    area: int
    zone: str = ""
    label: str = "unknown"  # 'person' | 'vehicle' | 'animal' | 'unknown' (see classify)

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]

    def scaled(self, scale: float) -> list[int]:
        """[x, y, w, h] in an image `scale` times the detection image's size (e.g. the recorded frame)."""
        return [int(round(value * scale)) for value in self.as_list()]


def covered_share(boxes, pixels: int) -> float:
    """A frame's motion score: the share of its `pixels` that the counted objects' boxes cover."""
    return sum(box.area for box in boxes) / pixels if pixels else 0.0


@dataclass(frozen=True, slots=True)
class MotionResult:
    """What the detector saw in one frame.

    motion: this frame counts as intrusion motion. score: share of the image covered by counted objects.
    activity: share of the image that differs from the background (all causes). boxes: counted objects.
    scene_change: the background was re-learnt this frame. tamper: 'covered' | 'defocused' | 'turned' | None.
    zone: detection zone of the largest counted object. mask: foreground pixels (0/255) of this frame.
    """

    motion: bool
    score: float
    boxes: tuple[Box, ...] = ()
    mask: np.ndarray | None = field(default=None, repr=False)
    activity: float = 0.0
    scene_change: bool = False
    tamper: str | None = None
    zone: str | None = None
    animals: tuple[Box, ...] = ()


#: width/height of a track's object (smoothed) at or below which it is upright (person), at or above which it is
#: long and low (vehicle or animal); and the share of the expected person height below which long and low is an
#: animal (a fox, cat or possum is far lower than a person standing at the same spot, a car is not)
UPRIGHT_ASPECT = 1.0
LONG_ASPECT = 1.3
ANIMAL_HEIGHT = 0.6


def classify(aspect: float, height_px: float, expected_px: float) -> str:
    """Class of a counted object from its smoothed shape and its height against a person's at its position."""
    if aspect <= UPRIGHT_ASPECT:
        return "person"
    if aspect < LONG_ASPECT:
        return "unknown"
    return "animal" if height_px < ANIMAL_HEIGHT * expected_px else "vehicle"


class MotionDetector:
    """Background subtraction + blob tracking; one instance per camera stream."""

    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        kernel = settings.blur | 1
        self._blur_size = (kernel, kernel)
        self._open = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))  # replaced per image size in _start
        self._min_px = 2.0
        self._person_px = 1.0
        self._restore = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))
        self._tamper = TamperDetector(settings.tamper)
        self._model: BackgroundModel | None = None
        self._zones: ZoneMap | None = None
        self._tracker: Tracker | None = None
        self._frames = 0
        self._last_ts: float | None = None
        self._settle_until = 0.0  # fast learning (start-up, after a scene change)
        self._blind = False
        self._blind_until = 0.0   # nothing counts (start-up only: nuisance levels are not learnt yet)
        self._freeze_until = 0.0
        self._previous: np.ndarray | None = None  # last frame (reference, no copy): steady pixels while settling
        self._bg_dt = self._nuisance_dt = 0.0
        self._last_raw: np.ndarray | None = None
        self._relighting = False  # the light changed and the background has not learnt it yet

    def process(self, luma: np.ndarray, ts: float | None = None) -> MotionResult:
        """Analyse one detection-size luma frame taken at `ts` seconds (default: frame count / DEFAULT_FPS)."""
        if not isinstance(luma, np.ndarray) or luma.ndim != 2 or luma.dtype != np.uint8:
            raise ValueError("MotionDetector.process expects a 2-D uint8 luma image, got "
                             f"{getattr(luma, 'dtype', type(luma))} {getattr(luma, 'shape', '')}")
        ts = self._frames / DEFAULT_FPS if ts is None else float(ts)
        dt = self._step(ts)
        smoothed = cv2.GaussianBlur(luma, self._blur_size, 0) if self._blur_size[0] > 1 else luma
        tamper = self._tamper.update(luma, ts)
        if self._model is None or self._model.shape != luma.shape:
            self._start(smoothed, ts)
            return MotionResult(False, 0.0, mask=np.zeros(luma.shape, np.uint8), tamper=tamper)
        model = self._model
        diff = model.difference(smoothed)
        raw = model.foreground(diff)
        changed = cv2.countNonZero(raw) / raw.size
        if self._relighting or self._scene_changed(smoothed, changed):
            # what used to mean re-learning: first see whether a change of light explains it (and go on comparing
            # through the light until the background has learnt it)
            diff, raw, changed = self._relit(smoothed, diff, raw, changed, ts)
        self._last_raw = raw
        if self._scene_changed(smoothed, changed):
            self._rebase(smoothed, ts)
            return MotionResult(False, 0.0, mask=raw, activity=changed, scene_change=True, tamper=tamper)
        settling = ts < self._settle_until
        previous, self._previous = self._previous, smoothed
        # erode 3x3 removes speckle; dilating 5x5 undoes it and restores edges the threshold nibbled off
        # (a quiet frame has nothing left after the erode: skip the rest of the object stages; with no changed
        # pixel at all, most frames of a still scene, the erode's result is known: 9 us saved)
        eroded = cv2.erode(raw, self._open) if changed else np.zeros(raw.shape, np.uint8)
        anything = changed > 0 and cv2.hasNonZero(eroded)  # (stops at the first pixel set)
        mask = cv2.dilate(eroded, self._restore) if anything else eroded
        if self._zones.masks_anything:
            mask = cv2.bitwise_and(mask, self._zones.keep)
        if ts < self._freeze_until and previous is not None:
            # the frame re-learnt at a scene change is often caught mid-change (a light warming up, exposure catching
            # up, a door swinging): whatever has come to rest since is taken in at once, what still moves stays
            # foreground and is tracked (start-up is not: there the first frame is no worse than the next)
            self._model.absorb_steady(smoothed, previous, raw)
        self._blind = ts < self._blind_until
        if self._blind:
            self._tracker.reset()
            self._learn(smoothed, diff, raw, dt, settling, ts < self._freeze_until, None)
            return MotionResult(False, 0.0, mask=mask, activity=changed, tamper=tamper)
        counted = self._counted(self._blobs(mask, raw) if anything else [], ts, diff)
        boxes = [box for box in counted if box.label != "animal"]
        animals = tuple(box for box in counted if box.label == "animal") if self.settings.animals == "report" else ()
        objects = self._object_mask(raw.shape) if self._frames % NUISANCE_EVERY == 0 else None
        self._learn(smoothed, diff, raw, dt, settling, ts < self._freeze_until, objects)
        score = covered_share(boxes, mask.size)
        zone = boxes[0].zone if boxes else None
        return MotionResult(bool(boxes), score, tuple(boxes), mask, changed, False, tamper, zone, animals)

    def _relit(self, smoothed: np.ndarray, diff: np.ndarray, raw: np.ndarray, changed: float,
               ts: float) -> tuple[np.ndarray, np.ndarray, float]:
        """(difference, foreground, changed share) with the background seen under this frame's light, when a large
        change is explained by a change of light (gain, exposure, IR switch): the light is then no foreground, the
        tracks go on and nothing is re-learnt. Pixels that were foreground last frame do not vote on the light.
        Only asked when the plain difference looks like a scene change: otherwise steady scenes keep the plain
        difference they always had (a camera's own gain hunting as a person walks in must not eat the person)."""
        model = self._model
        curve = tone_curve(smoothed, model.mean8, self._last_raw, 0.5 * self.settings.threshold)
        self._relighting = curve is not None
        if curve is not None:
            return self._compared(cv2.absdiff(smoothed, compensated(model.mean8, curve)))
        if ts >= self._freeze_until:
            return diff, raw, changed
        # just re-learnt and the light may still be moving, unevenly (lamps warming up one after another, exposure
        # settling): no one curve explains that, the local light around each pixel does; compared plainly the
        # whole wall is foreground for the second the fast learning takes to catch up, the person walking in
        # merges with it and the view is re-learnt again with them in it. Not in steady light (a large person
        # moving may have made the re-learn): what differs then is the person, and the plain difference stays;
        # nor where the plain difference explains the frame better (fewer pixels differ): a large person moving
        # while the exposure catches up bends their cells' light and would make a halo on the wall around them
        self._relighting = True
        relit = locally_compensated(smoothed, model.mean8, self._last_raw)
        local = None if relit is None else self._compared(cv2.absdiff(smoothed, relit))
        return local if local is not None and local[2] < changed else (diff, raw, changed)

    def _compared(self, diff: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(difference, foreground, changed share) for this difference from the background."""
        raw = self._model.foreground(diff)
        return diff, raw, cv2.countNonZero(raw) / raw.size

    def _scene_changed(self, smoothed: np.ndarray, changed: float) -> bool:
        return changed >= self.settings.scene_change_share or self._light_changed(smoothed, changed)

    def _light_changed(self, smoothed: np.ndarray, changed: float) -> bool:
        """A large change that mostly disappears once the background is scaled to the frame's brightness is the
        light changing (switch, cloud, exposure), not an object: an object stays different after scaling."""
        if changed < self.settings.light_share:
            return False
        gain = self._model.gain_to(smoothed)
        if abs(gain - 1.0) < self.settings.light_change:
            return False
        return self._model.changed_share(smoothed, gain) < 0.5 * changed

    # state -------------------------------------------------------------------------------------------------
    def _step(self, ts: float) -> float:
        dt = 1.0 / DEFAULT_FPS if self._last_ts is None or ts <= self._last_ts else ts - self._last_ts
        self._last_ts = ts
        self._frames += 1
        return min(dt, 1.0)

    def _start(self, smoothed: np.ndarray, ts: float) -> None:
        s = self.settings
        height, width = smoothed.shape
        self._min_px, kernel_w = object_sizes(s, smoothed.shape)
        self._person_px = s.person_height * height
        self._open = cv2.getStructuringElement(cv2.MORPH_RECT, (kernel_w, 3))
        self._zones = ZoneMap(s.zones, smoothed.shape, s.threshold, self._min_px, PERSON_ASPECT * PERSON_FILL)
        self._model = BackgroundModel(smoothed, self._zones.threshold, s.activity_gain,
                                      activity_cap=min(255, 4 * s.threshold))
        self._tracker = Tracker(TrackerParams(
            travel_px=s.travel * height, move_px=max(1.5, 0.02 * height), gate_px=2.0,
            max_gap_s=s.track_gap_s, still_s=s.still_s, min_hits=s.min_track_frames,
            min_straightness=s.straightness, large_px=s.large_object * height * width, box_margin=RESTORE_MARGIN,
            patient_s=s.patient_s, patient_share=s.patient_travel))
        self._settle_until = self._blind_until = ts + s.startup_s
        self._previous = None
        self._last_raw = None
        self._relighting = False

    def _rebase(self, smoothed: np.ndarray, ts: float) -> None:
        # not blind afterwards: the tracker starts afresh on the new view and a person walking in during the change
        # counts as soon as they have travelled; the exposure may still be catching up, so the next frames are
        # compared through the light first
        self._model.relearn(smoothed)
        self._last_raw = None
        self._relighting = True
        self._tracker.reset()
        self._settle_until = self._freeze_until = ts + self.settings.settle_s

    def _object_mask(self, shape: tuple[int, int]) -> np.ndarray | None:
        """0/255 mask of the boxes of confirmed tracks seen this frame (None when there are none)."""
        boxes = [t.box for t in self._tracker.tracks if t.confirmed and t.seen]
        if not boxes:
            return None
        objects = np.zeros(shape, np.uint8)
        for x, y, w, h, _area in boxes:
            objects[y:y + h, x:x + w] = 255
        return objects

    def _learn(self, smoothed: np.ndarray, diff: np.ndarray, raw: np.ndarray, dt: float, settling: bool,
               frozen: bool, objects: np.ndarray | None) -> None:
        s = self.settings
        # while settling, learn ~10x faster so a fresh background is usable within settle_s
        speed = 10.0 if settling else 1.0
        # learning runs on every BACKGROUND_EVERY-th / NUISANCE_EVERY-th frame with the time elapsed since, which
        # gives the same time constants at a fraction of the cost (these statistics change slowly)
        self._bg_dt += dt
        self._nuisance_dt += dt
        if settling or self._frames % BACKGROUND_EVERY == 0:
            step, self._bg_dt = self._bg_dt, 0.0
            self._model.learn_background(smoothed, raw, min(1.0, speed * step / s.background_s),
                                         round(s.absorb_s / max(step, 1e-3)))
        if frozen:
            # right after a scene change the differences come from the change itself, not from nuisance motion:
            # keep what was learnt about busy regions instead of learning "everything is busy"
            self._nuisance_dt = 0.0
        elif settling or self._frames % NUISANCE_EVERY == 0:
            step, self._nuisance_dt = self._nuisance_dt, 0.0
            # how often a pixel is foreground is learnt at the usual pace even at start-up: foreground there comes
            # mostly from the background still converging (or a first frame from another moment), and learnt fast
            # it marks the whole view busy for tens of seconds (every object then needs more travel)
            busy_speed = 1.0 if self._blind else speed
            self._model.learn_nuisance(diff, raw, min(1.0, speed * step / s.activity_s),
                                       min(1.0, busy_speed * step / s.nuisance_s), objects)

    # objects -----------------------------------------------------------------------------------------------
    def _blobs(self, mask: np.ndarray, raw: np.ndarray) -> list[tuple[int, int, int, int, int]]:
        """Bounding boxes (x, y, w, h, area) of foreground regions (the 5x5 restore already bridges small gaps).

        The largest-object test counts the region's own changed pixels (`raw`), not the area its outline encloses:
        a person right at the camera fills an outline most of the image wide, with the background showing
        through between arm and body, and the outline's area would make them vanish the moment they come close."""
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        s = self.settings
        height, width = mask.shape
        image_area = height * width
        min_px = min(self._min_px, min(self._zones.min_area_px, default=math.inf))
        max_px = s.max_area * image_area
        min_h = s.min_height * height
        blobs = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            if w * h < min_px or h < min_h:
                continue
            area = int(cv2.contourArea(contour))
            if area > max_px and cv2.countNonZero(raw[y:y + h, x:x + w]) > max_px:
                continue
            if min_px <= area:
                blobs.append((x, y, w, h, area))
        blobs.sort(key=lambda blob: -blob[4])
        return blobs[:MAX_BLOBS]

    def _demand(self, x: int, y: int, w: int, h: int) -> float:
        """How much further than usual an object here must travel: more where pixels are often foreground (busy)
        and where their values fluctuate strongly (learnt activity well above the threshold: foliage, water)."""
        s = self.settings
        busy = cv2.mean(self._model.busy[y:y + h, x:x + w])[0] / 255.0  # cv2.mean: ~20x cheaper than numpy here
        agitation = cv2.mean(self._model.activity[y:y + h, x:x + w])[0] / s.threshold
        return 1.0 + s.nuisance_gain * busy + s.activity_demand * max(0.0, agitation - 0.5)

    def _size_factor(self, h: int) -> float:
        """Share of the usual travel a small object needs: its own height (at least the smallest person's). A far
        person covers a few pixels a second, and the image-wide travel would take them many seconds; travelling
        one's own height is the same evidence at any distance."""
        own = max(self._person_px, h - RESTORE_MARGIN) * self.settings.travel_heights
        return min(1.0, own / self._tracker.params.travel_px)

    def _counted(self, blobs: list[tuple[int, int, int, int, int]], ts: float, diff: np.ndarray) -> list[Box]:
        demand = [self._demand(x, y, w, h) * self._size_factor(h) for x, y, w, h, _a in blobs]
        owners = self._tracker.update(blobs, ts, demand)
        default_min = self._min_px
        boxes = []
        for blob, track in zip(blobs, owners, strict=True):
            if not (track.confirmed and track.moving(ts, self.settings.still_s)):
                continue
            x, y, w, h, area = blob
            zone, zone_min = self._zones.zone_at(x + w / 2, y + h - 1)  # where the object stands
            if zone is None or area < (default_min if zone_min is None else zone_min):
                continue
            height_px = max(1.0, h - RESTORE_MARGIN)
            if self._out_of_focus(track, diff, blob, height_px):
                continue
            aspect = track.aspect if track.aspect > 0 else max(1.0, w - RESTORE_MARGIN) / height_px
            boxes.append(Box(x, y, w, h, area, zone, classify(aspect, height_px, self._expected_person(zone, y + h))))
        return boxes

    def _out_of_focus(self, track: Track, diff: np.ndarray, blob: tuple[int, int, int, int, int],
                      height_px: float) -> bool:
        """An object blurred far beyond focus (its edge wider than OUT_OF_FOCUS_PX and OUT_OF_FOCUS_SHARE of its
        height, smoothed over frames) is an insect or web at the lens, not someone in the scene. Measured only on
        objects that would count, so a quiet frame pays nothing."""
        if track.edge == 0 or track.hits % FOCUS_EVERY == 0:  # focus does not change from frame to frame
            x, y, w, h, _area = blob
            width = edge_width(diff[y:y + h, x:x + w])  # the blob box already has the restore dilation as margin
            track.edge = width if track.edge == 0 else 0.5 * track.edge + 0.5 * width
        return track.edge > max(OUT_OF_FOCUS_PX, OUT_OF_FOCUS_SHARE * height_px)

    def _expected_person(self, zone: str, foot_y: float) -> float:
        """Height in px of a person standing at image row `foot_y`: the zone's own heights when it sets them,
        else linear from the image's far (top) to its near (bottom) edge."""
        zoned = self._zones.person_px(zone, foot_y)
        if zoned is not None:
            return zoned
        s = self.settings
        rows = self._model.shape[0]
        share = s.person_height + (s.person_height_near - s.person_height) * min(1.0, foot_y / rows)
        return share * rows
