"""Generated hard cases (tests/hard_cases.py) on a real night still: a far person with sensor noise, a small
animal, a person walking through a 40 % light ramp, through an IR switch and in as the lights come on, an insect near
the lens, rain."""

from __future__ import annotations

import pytest

from models.motion import MotionDetector, MotionSettings
from tests.footage import require_footage
from tests.hard_cases import Insect, Rain, Walker, frames, still_from

ENTRY_S = 5.0  # after the detector's start-up learning


@pytest.fixture(scope="module")
def night_still():
    return still_from(str(require_footage("14_night_lane_people_far/cctv.mp4")))


def _onset(sequence, settings: MotionSettings | None = None) -> float | None:
    """Seconds from ENTRY_S to the first motion frame (None = never); motion before ENTRY_S fails the test."""
    detector = MotionDetector(settings or MotionSettings())
    for ts, luma in sequence:
        result = detector.process(luma, ts)
        if result.motion:
            assert ts >= ENTRY_S, f"motion at {ts:.1f} s before anyone entered"
            return ts - ENTRY_S
    return None


def _any_motion(sequence) -> bool:
    detector = MotionDetector(MotionSettings())
    return any(detector.process(luma, ts).motion for ts, luma in sequence)


@pytest.mark.footage
def test_far_person_at_night_with_sensor_noise(night_still):
    # 6 px tall at 180 rows (24 px at 720), walking one body height per second, noise sigma 3
    walker = Walker(height=6, x=150, foot_y=40, speed=6, start_s=ENTRY_S)
    onset = _onset(frames(night_still, 12, walkers=(walker,), noise=3.0))
    assert onset is not None and onset <= 2.0, onset


@pytest.mark.footage
def test_small_animal_crossing_raises_no_motion(night_still):
    animal = Walker(height=10, x=40, foot_y=170, speed=25, start_s=ENTRY_S, contrast=60, animal=True)
    assert not _any_motion(frames(night_still, 12, walkers=(animal,), noise=2.0))


@pytest.mark.footage
def test_animal_reported_when_configured(night_still):
    animal = Walker(height=10, x=40, foot_y=170, speed=25, start_s=ENTRY_S, contrast=60, animal=True)
    detector = MotionDetector(MotionSettings(animals="report"))
    results = [detector.process(luma, ts) for ts, luma in frames(night_still, 12, walkers=(animal,))]
    assert not any(r.motion for r in results)
    assert any(box.label == "animal" for r in results for box in r.animals)


@pytest.mark.footage
def test_near_person_is_classed_person(night_still):
    walker = Walker(height=40, x=60, foot_y=160, speed=30, start_s=ENTRY_S)
    detector = MotionDetector(MotionSettings())
    labels = [box.label for ts, luma in frames(night_still, 9, walkers=(walker,))
              for box in detector.process(luma, ts).boxes]
    assert labels and labels.count("person") >= 0.8 * len(labels), labels


@pytest.mark.footage
def test_person_walking_while_light_ramps_down(night_still):
    walker = Walker(height=30, x=60, foot_y=160, speed=25, start_s=ENTRY_S)
    onset = _onset(frames(night_still, 12, walkers=(walker,), ramp=(4.0, 5.0, -0.4), noise=2.0))
    assert onset is not None and onset <= 2.0, onset


@pytest.mark.footage
def test_person_walking_while_light_ramps_up(night_still):
    walker = Walker(height=30, x=60, foot_y=160, speed=25, start_s=ENTRY_S)
    onset = _onset(frames(night_still, 12, walkers=(walker,), ramp=(4.0, 5.0, 0.4), noise=2.0))
    assert onset is not None and onset <= 2.0, onset


@pytest.mark.footage
def test_person_walking_through_ir_switch(night_still):
    walker = Walker(height=30, x=60, foot_y=160, speed=25, start_s=ENTRY_S)
    onset = _onset(frames(night_still, 12, walkers=(walker,), ir_switch_s=ENTRY_S + 0.5, noise=2.0))
    assert onset is not None and onset <= 2.0, onset


@pytest.mark.footage
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_insect_near_the_lens_raises_no_motion(night_still, seed):
    # 20 px radius at 180 rows, blurred, bright, a new direction every frame (a moth in the IR light)
    insect = Insect(radius=20, start_s=ENTRY_S)
    assert not _any_motion(frames(night_still, 12, insect=insect, ir_switch_s=1.0, noise=2.0, seed=seed))


@pytest.mark.footage
@pytest.mark.parametrize("seed", [0, 1])
def test_rain_streaks_raise_no_motion(night_still, seed):
    assert not _any_motion(frames(night_still, 12, rain=Rain(count=80), noise=2.0, seed=seed))


@pytest.mark.footage
def test_person_seen_through_rain(night_still):
    walker = Walker(height=30, x=60, foot_y=160, speed=25, start_s=ENTRY_S)
    onset = _onset(frames(night_still, 12, walkers=(walker,), rain=Rain(count=80), noise=2.0))
    assert onset is not None and onset <= 2.0, onset


@pytest.mark.footage
@pytest.mark.parametrize("after_s", [0.3, 0.8])
def test_person_walking_in_as_the_lights_come_on(night_still, after_s):
    # a dark room lit at once as someone walks in: no change of light explains it (the dark frame holds too
    # little of the scene), the view is re-learnt, and the walker must still count within the onset target
    walker = Walker(height=30, x=60, foot_y=160, speed=25, start_s=ENTRY_S)
    sequence = frames(night_still, 12, walkers=(walker,), lights_on_s=ENTRY_S + after_s, noise=2.0)
    onset = _onset(sequence)
    assert onset is not None and onset <= 2.0, onset
