"""Panorama unwrapping, bearings and sectors: real CEPDOF fisheye annotations and drawn people detected on the strip."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from drivers.camera.base import make_luma
from models.bearing import SectorSettings, angle_diff, sectors_at, sectors_in_span
from models.motion import Box, MotionDetector, MotionSettings
from models.panorama import (
    FisheyePanorama,
    MultiPanorama,
    PanoramaSettings,
    PanoramaView,
    alarm_fields,
    make_panorama,
    merge_seam,
    scaled_strip_size,
)
from tests.footage import SHARED_DATA, require_footage

CEPDOF = SHARED_DATA / "10_fisheye_cepdof_sample_indoor"
DETECT_WIDTH = 320


def _need_cepdof() -> None:
    require_footage("10_fisheye_cepdof_sample_indoor/annotations/video_0.json")


def _annotations() -> tuple[dict, list[dict]]:
    data = json.loads((CEPDOF / "annotations" / "video_0.json").read_text())
    sizes = {image["id"]: (image["width"], image["height"]) for image in data["images"]}
    return sizes, data["annotations"]


def _angle_around(x: float, y: float, cx: float, cy: float) -> float:
    """The reference: angle of a point around a centre, clockwise from image-up (computed here, not by the agent)."""
    return math.degrees(math.atan2(x - cx, cy - y)) % 360


# --- real data: CEPDOF overhead fisheye ---------------------------------------------------------------------

def test_cepdof_bearings_match_box_centre_angles():
    _need_cepdof()
    sizes, annotations = _annotations()
    settings = PanoramaSettings(enabled=True)  # centre = image centre, north = image-up, looking down
    checked = 0
    for note in annotations:
        width, height = sizes[note["image_id"]]
        scale = DETECT_WIDTH / width            # the agent sees the luma image, not the 2048 px original
        panorama = FisheyePanorama(settings, (DETECT_WIDTH, round(height * scale)))
        cx, cy = note["bbox"][0], note["bbox"][1]
        u, v = panorama.image_to_strip(cx * scale, cy * scale)
        # The agent's bearing: a small box on the strip around the person's centre, located back.
        location = panorama.locate(Box(int(u) - 3, int(v) - 3, 6, 6, 36))
        expected = _angle_around(cx, cy, width / 2, height / 2)
        assert angle_diff(location.bearing_deg, expected) <= 5.0, (note, location.bearing_deg, expected)
        assert angle_diff(panorama.point_bearing(cx * scale, cy * scale), expected) <= 0.01
        assert 0 <= v <= panorama.strip_size[1], "every annotated person lies on the unwrapped ring"
        checked += 1
    assert checked == 70


def test_alarm_fields_list_bearings_and_each_sector_once():
    sectors = (SectorSettings(name="gate", start_deg=0, end_deg=90), SectorSettings(name="yard", start_deg=90,
                                                                                     end_deg=360))
    panorama = FisheyePanorama(PanoramaSettings(sectors=sectors, overlap_deg=0), (320, 320))
    locations = [panorama.locate(Box(170, 20, 20, 40, 800)), panorama.locate(Box(10, 20, 10, 40, 400)),
                 panorama.locate(Box(20, 20, 10, 40, 400))]
    assert alarm_fields(locations) == {"bearings_deg": [90.0, 7.5, 12.5], "sectors": ["gate", "yard"]}
    assert locations[0].as_payload() == {"bearing_deg": 90.0, "span_deg": [85.0, 10.0], "sectors": ["gate", "yard"]}


def test_cepdof_strip_shows_each_person_where_the_map_says():
    """Unwrap the real image; the strip pixels around each mapped person centre are the image's pixels there."""
    _need_cepdof()
    sizes, annotations = _annotations()
    image = cv2.imread(str(CEPDOF / "video_0" / "Lunch3_000001.jpg"))
    assert image is not None
    luma = make_luma(image, DETECT_WIDTH)
    panorama = FisheyePanorama(PanoramaSettings(enabled=True), (luma.shape[1], luma.shape[0]))
    strip = panorama.unwrap(luma)
    assert strip.shape == (panorama.strip_size[1], panorama.strip_size[0])
    scale = DETECT_WIDTH / 2048
    for note in [n for n in annotations if n["image_id"] == "Lunch3_000001"]:
        u, v = panorama.image_to_strip(note["bbox"][0] * scale, note["bbox"][1] * scale)
        x, y = panorama.strip_to_image(np.floor(u) + 0.5, np.floor(v) + 0.5)
        strip_px = int(strip[int(v), int(u)])
        image_px = cv2.getRectSubPix(luma, (1, 1), (float(x) - 0.5, float(y) - 0.5))[0, 0]
        assert abs(strip_px - int(image_px)) <= 2


# --- drawn people detected on the strip --------------------------------------------------------------------

def _background(size: int = DETECT_WIDTH) -> np.ndarray:
    rng = np.random.default_rng(7)
    noise = rng.integers(60, 140, (size, size), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (9, 9), 0)


def _with_person(background: np.ndarray, angle_deg: float, radius: float) -> np.ndarray:
    """A bright person-shaped ellipse, long axis radial (as people appear in an overhead fisheye)."""
    image = background.copy()
    cx = cy = background.shape[0] / 2
    x = cx + radius * math.sin(math.radians(angle_deg))
    y = cy - radius * math.cos(math.radians(angle_deg))
    # cv2 ellipse angle rotates the x axis clockwise (y down); the radial direction is angle_deg - 90 from +x.
    cv2.ellipse(image, (round(x), round(y)), (14, 6), angle_deg - 90, 0, 360, 235, -1)
    return image


SETTLE_FRAMES = 30          # 3 s of empty scene at 10 fps: the detector learns its background


def _walk_in(panorama, background: np.ndarray, angle: float, min_area: float = 0.002):
    """A person walks straight towards the camera (constant bearing) from radius 125 to 65; the agent's motion
    detector runs on the unwrapped strips. Returns the seam-merged boxes and the person's radius on the last
    frame with motion."""
    detector = MotionDetector(MotionSettings(min_area=min_area))
    for index in range(SETTLE_FRAMES):
        detector.process(panorama.unwrap(background), ts=index / 10)
    seen = None
    for step in range(12):
        radius = 125 - 5 * step
        result = detector.process(panorama.unwrap(_with_person(background, angle, radius)),
                                  ts=(SETTLE_FRAMES + step) / 10)
        if result.motion:
            seen = (result.boxes, radius)
    assert seen is not None, "the walking person must be detected on the strip"
    return merge_seam(seen[0], panorama.period), seen[1]


@pytest.mark.parametrize("angle", [0.0, 37.0, 123.0, 200.0, 291.0, 357.0])
@pytest.mark.parametrize("mount,north", [("down", 0.0), ("down", 30.0), ("up", 75.0)])
def test_drawn_person_comes_back_at_its_angle(angle, mount, north):
    settings = PanoramaSettings(enabled=True, mount=mount, north_offset_deg=north)
    panorama = FisheyePanorama(settings, (DETECT_WIDTH, DETECT_WIDTH))
    background = _background()
    boxes, radius = _walk_in(panorama, background, angle)
    assert len(boxes) == 1, boxes
    location = panorama.locate(boxes[0])
    relative = angle - north
    expected = (relative if mount == "down" else -relative) % 360
    assert angle_diff(location.bearing_deg, expected) <= 2.0
    # The box mapped back to the fisheye image surrounds the drawn person.
    x, y, w, h = location.image_box
    px = DETECT_WIDTH / 2 + radius * math.sin(math.radians(angle))
    py = DETECT_WIDTH / 2 - radius * math.cos(math.radians(angle))
    assert x <= px <= x + w and y <= py <= y + h
    assert w < 60 and h < 60, "the mapped-back box stays tight around the person"


def test_strip_rows_keep_people_upright_for_both_mounts():
    """Looking down, heads point to the rim (rim at the top of the strip); looking up, to the centre."""
    for mount, rim_on_top in (("down", True), ("up", False)):
        panorama = FisheyePanorama(PanoramaSettings(mount=mount), (320, 320))
        _, v_rim = panorama.image_to_strip(160.0, 160.0 - 150)
        _, v_mid = panorama.image_to_strip(160.0, 160.0 - 60)
        assert (v_rim < v_mid) == rim_on_top, mount
        assert 0 <= v_rim <= panorama.strip_size[1] and 0 <= v_mid <= panorama.strip_size[1]
        # strip_to_image and image_to_strip are inverses on the ring (the remap uses the first).
        xs, ys = np.random.default_rng(3).uniform(40, 280, (2, 200))
        ring = np.hypot(xs - 160, ys - 160)
        xs, ys = xs[(ring > 20) & (ring < 155)], ys[(ring > 20) & (ring < 155)]
        back_x, back_y = panorama.strip_to_image(*panorama.image_to_strip(xs, ys))
        np.testing.assert_allclose(back_x, xs, atol=1e-6)
        np.testing.assert_allclose(back_y, ys, atol=1e-6)


@pytest.mark.parametrize("overlap", [0.0, 20.0])
def test_person_across_north_seam_is_one_detection_with_a_span_through_north(overlap):
    sectors = (SectorSettings(name="north", start_deg=350, end_deg=10),
               SectorSettings(name="east", start_deg=10, end_deg=180))
    settings = PanoramaSettings(enabled=True, sectors=sectors, overlap_deg=overlap)
    panorama = FisheyePanorama(settings, (DETECT_WIDTH, DETECT_WIDTH))
    assert panorama.strip_size[0] == 720 + round(720 * overlap / 360)
    (box,), _ = _walk_in(panorama, _background(), 0.0, min_area=0.0005)
    if overlap:
        assert box.x < panorama.period < box.x + box.w, "seen whole across the seam in the overlap"
    location = panorama.locate(box)
    assert location.start_deg > 340 and location.width_deg < 20
    assert angle_diff(location.bearing_deg, 0.0) <= 2.0
    assert location.sectors == ("north",)


def test_merge_seam_joins_the_two_halves_and_drops_overlap_copies():
    period = 720
    halves = [Box(0, 50, 9, 30, 200), Box(712, 52, 8, 30, 190)]
    assert merge_seam(halves, period) == [Box(712, 50, 17, 32, 200)]
    with_overlap = [Box(0, 50, 9, 30, 200), Box(712, 50, 17, 30, 400), Box(760, 10, 10, 10, 80),
                    Box(300, 10, 10, 10, 80)]
    assert merge_seam(with_overlap, period) == [Box(712, 50, 17, 30, 400), Box(300, 10, 10, 10, 80)]
    apart = [Box(0, 10, 9, 20, 100), Box(712, 100, 8, 20, 100)]
    assert sorted(merge_seam(apart, period), key=lambda b: b.x) == apart, "different rows: two people"


def test_panorama_view_unwraps_each_size_and_returns_boxes_in_the_detection_image():
    view = PanoramaView(PanoramaSettings(enabled=True, north_offset_deg=90))
    background = _background()
    strip = view.unwrap(background)
    assert strip.shape == (162, 760) and view.panorama.source_size == (320, 320)
    first = view.panorama
    view.unwrap(background)
    assert view.panorama is first, "maps are built once per image size"
    view.unwrap(background[:240, :240])
    assert view.panorama is not first and view.panorama.source_size == (240, 240)   # a new size: new maps
    view.unwrap(background)
    u, v = view.panorama.image_to_strip(250.0, 160.0)       # east of centre in the image; north is to the right
    locations = view.locate([Box(int(u) - 5, int(v) - 10, 10, 20, 200, zone="yard")])
    (box,) = PanoramaView.source_boxes(locations)
    assert angle_diff(locations[0].bearing_deg, 0.0) <= 1.0
    assert box.x <= 250 <= box.x + box.w and box.y <= 160 <= box.y + box.h and box.zone == "yard"
    with pytest.raises(ValueError, match="before unwrap"):
        PanoramaView(PanoramaSettings()).locate([])


# --- sectors and config -------------------------------------------------------------------------------------

def test_sectors_wrap_through_north_and_spans_touch_neighbours():
    sectors = (SectorSettings(name="gate", start_deg=315, end_deg=45),
               SectorSettings(name="yard", start_deg=45, end_deg=200),
               SectorSettings(name="road", start_deg=200, end_deg=315))
    assert sectors_at(sectors, 0) == ["gate"]
    assert sectors_at(sectors, 359.9) == ["gate"]
    assert sectors_at(sectors, 45) == ["yard"]
    assert sectors_at(sectors, 250) == ["road"]
    assert sectors_in_span(sectors, 40, 10) == ["gate", "yard"]
    assert sectors_in_span(sectors, 300, 120) == ["gate", "yard", "road"]
    assert sectors_in_span(sectors, 100, 5) == ["yard"]


def test_bad_panorama_config_is_rejected_with_a_clear_reason():
    with pytest.raises(ValidationError, match="used twice"):
        PanoramaSettings(sectors=(SectorSettings(name="a", start_deg=0, end_deg=90),
                                  SectorSettings(name="a", start_deg=90, end_deg=180)))
    with pytest.raises(ValidationError, match="empty sector"):
        SectorSettings(name="a", start_deg=10, end_deg=10)
    with pytest.raises(ValidationError, match="at least 2"):
        PanoramaSettings(kind="multi")
    with pytest.raises(ValidationError, match="extra"):
        PanoramaSettings(centre=0.5)
    with pytest.raises(ValidationError):
        PanoramaSettings(north_offset_deg=360)


def test_unwrap_rejects_a_frame_of_the_wrong_size():
    panorama = FisheyePanorama(PanoramaSettings(), (320, 320))
    with pytest.raises(ValueError, match="built for 320x320"):
        panorama.unwrap(np.zeros((240, 320), np.uint8))


def test_recording_size_panorama_agrees_with_detection_size():
    settings = PanoramaSettings(enabled=True, north_offset_deg=12)
    small = FisheyePanorama(settings, (320, 320))
    big = FisheyePanorama(settings, (2048, 2048), scaled_strip_size(small, 2048 / 320))
    assert big.period == 4608 and big.strip_size[1] == round(small.strip_size[1] * 6.4)
    colour = cv2.cvtColor(_with_person(_background(2048), 140.0, 640), cv2.COLOR_GRAY2BGR)
    assert big.unwrap(colour).shape == (big.strip_size[1], big.strip_size[0], 3)
    location = small.locate(Box(100, 40, 10, 30, 300))
    x, y, w, h = location.scaled_box(6.4)
    bx, by = big.image_to_strip(x + w / 2, y + h / 2)
    assert angle_diff(big.bearing_at(float(bx)), location.bearing_deg) < 1.0


# --- N fixed cameras as one panorama -------------------------------------------------------------------------

def test_four_fixed_cameras_form_one_strip_and_bearings_come_back():
    cams = [{"name": n, "yaw_deg": y, "hfov_deg": 90} for n, y in (("n", 0), ("e", 90), ("s", 180), ("w", 270))]
    settings = PanoramaSettings(enabled=True, kind="multi", cameras=cams, strip_width=960, strip_height=120,
                                sectors=({"name": "back", "start_deg": 135, "end_deg": 225},))
    panorama = make_panorama(settings, (320, 240))
    assert isinstance(panorama, MultiPanorama) and panorama.strip_size == (960 + 53, 120)
    background = [_background(320)[:240] for _ in cams]
    focal = 160 / math.tan(math.radians(45))
    offset = 20.0                               # the person is 20° right of the south camera's axis
    px = 160 + focal * math.tan(math.radians(offset))
    detector = MotionDetector(MotionSettings())
    for index in range(SETTLE_FRAMES):
        detector.process(panorama.unwrap(background), ts=index / 10)
    for step in range(12):                   # walking down the south camera's image, at a fixed bearing
        scene = [image.copy() for image in background]
        py = 60 + 8 * step
        cv2.ellipse(scene[2], (round(px), py), (12, 40), 0, 0, 360, 235, -1)
        result = detector.process(panorama.unwrap(scene), ts=(SETTLE_FRAMES + step) / 10)
    assert result.motion
    (box,) = merge_seam(result.boxes, panorama.period)
    location = panorama.locate(box)
    assert location.camera == "s"
    assert angle_diff(location.bearing_deg, 180 + offset) <= 2.0
    assert location.sectors == ("back",)
    x, y, w, h = location.image_box
    assert x <= px <= x + w and y <= py <= y + h
    with pytest.raises(ValueError, match="4 cameras, got 3"):
        panorama.unwrap(background[:3])
