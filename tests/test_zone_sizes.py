"""A detection zone's own person heights (set on the commissioning page by dragging a person-sized marker): the
detector's size check inside the zone follows them, the class of an object against a person there and the
zone's smallest object from the person at its far edge."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from models.motion import MotionDetector, MotionSettings
from models.zones import ZoneMap, ZoneSettings
from tests.test_motion import FPS, background, noisy

WHOLE = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))


def _walk(width: int, height: int, y: int, frames: int = 110, start: int = 50, step: int = 2) -> list[np.ndarray]:
    """Still textured scene; from `start` a bright width x height block moves right `step` px per frame."""
    rng = np.random.default_rng(7)
    bg = background()
    out = []
    for index in range(frames):
        image = bg.copy()
        if index >= start:
            x = 4 + step * (index - start)
            image[y:y + height, x:x + width] = 235
        out.append(noisy(image, rng))
    return out


def _run(frames, zone: ZoneSettings) -> list:
    detector = MotionDetector(MotionSettings(zones=(zone,), animals="report"))
    return [detector.process(frame, index / FPS) for index, frame in enumerate(frames)]


def test_a_long_low_object_is_an_animal_by_the_image_wide_line_and_a_vehicle_where_people_look_small():
    frames = _walk(width=30, height=12, y=50)  # feet at row 62 of 120: a person there is ~30 px by default
    plain = _run(frames, ZoneSettings(name="yard", polygon=WHOLE))
    assert not any(r.motion for r in plain) and any(r.animals for r in plain)  # 12 px < 0.6 x 30 px
    far = ZoneSettings(name="yard", polygon=WHOLE, person_height_far=0.12, person_height_near=0.12)
    zoned = _run(frames, far)  # a person here is 14 px: a 12 px tall long object is a car's height
    counted = [box for r in zoned for box in r.boxes]
    assert counted and {box.label for box in counted} == {"vehicle"} and {b.zone for b in counted} == {"yard"}


def test_an_object_smaller_than_the_person_at_the_zones_far_edge_does_not_count_there():
    frames = _walk(width=6, height=10, y=50)  # an upright 6 x 10 px figure
    assert any(r.motion for r in _run(frames, ZoneSettings(name="yard", polygon=WHOLE)))
    near = ZoneSettings(name="yard", polygon=WHOLE, person_height_far=0.3, person_height_near=0.6)
    assert not any(r.motion for r in _run(frames, near))  # the smallest person here is 36 px tall
    own = ZoneSettings(name="yard", polygon=WHOLE, person_height_far=0.3, person_height_near=0.6, min_area=0.001)
    assert any(r.motion for r in _run(frames, own))  # a zone's own min_area still rules over the heights


def test_the_expected_height_runs_from_the_zones_far_edge_to_its_near_edge():
    zone = ZoneSettings(name="drive", polygon=((0.2, 0.25), (0.8, 0.25), (0.8, 0.75), (0.2, 0.75)),
                        person_height_far=0.1, person_height_near=0.3)
    zones = ZoneMap((zone,), (101, 160), 18.0, 2.0, person_area=0.2)
    assert zones.person_px("drive", 25.0) == pytest.approx(10.1)   # far edge: 0.1 of 101 rows
    assert zones.person_px("drive", 50.0) == pytest.approx(20.2)   # half way
    assert zones.person_px("drive", 90.0) == pytest.approx(30.3)   # beyond the near edge: held
    assert zones.person_px("other", 50.0) is None
    assert zones.min_area_px == [pytest.approx(0.2 * 10.1 ** 2)]


@pytest.mark.parametrize(("heights", "key", "words"), [
    ({"person_height_far": 0.1}, "person_height_near", "together"),
    ({"person_height_near": 0.1}, "person_height_near", "together"),
    ({"person_height_far": 0.3, "person_height_near": 0.1}, "person_height_near", "smaller"),
    ({"person_height_far": 1.5, "person_height_near": 0.1}, "person_height_far", "less than or equal to 1"),
])
def test_zone_heights_are_refused_naming_the_key(heights, key, words):
    with pytest.raises(ValidationError) as refused:
        ZoneSettings(name="yard", polygon=WHOLE, **heights)
    errors = refused.value.errors()
    assert [error["loc"] for error in errors] == [(key,)] and words in errors[0]["msg"]
