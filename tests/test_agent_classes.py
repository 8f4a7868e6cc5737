"""Object classes through the whole agent: a person's alarm says `class: person`; an animal raises no intrusion
and, with detection.animals = "report", one `animal` event. Generated from a real night still."""

from __future__ import annotations

import cv2
import pytest

from agent.config import parse_config
from agent.pipeline import Agent
from common.clock import ManualClock
from drivers.camera.replay import ReplayCamera
from tests.footage import require_footage
from tests.hard_cases import Walker, frames, still_from

ENTRY_S = 5.0


@pytest.fixture(scope="module")
def night_still():
    return still_from(str(require_footage("14_night_lane_people_far/cctv.mp4")))


def replay(tmp_path, sequence, detection: dict) -> list[dict]:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, (_, luma) in enumerate(sequence):
        cv2.imwrite(str(folder / f"{index:04d}.png"), cv2.cvtColor(luma, cv2.COLOR_GRAY2BGR))
    config = parse_config({"data_dir": str(tmp_path / "data"), "detection": detection,
                           "camera": {"backend": "replay", "source": str(folder), "detect_width": 320},
                           "recorder": {"post_roll_s": 1.0, "pre_roll_s": 1.0}})
    clock = ManualClock()
    camera = ReplayCamera(folder, clock=clock, fps=10.0, realtime=False, detect_width=320)
    return list(Agent(config, camera, clock, upload=False).run().events_published)


@pytest.mark.footage
def test_a_person_alarm_carries_its_class(night_still, tmp_path):
    walker = Walker(height=40, x=60, foot_y=160, speed=30, start_s=ENTRY_S)
    events = replay(tmp_path, frames(night_still, 10, walkers=(walker,)), {})
    starts = [e for e in events if e["kind"] == "intrusion" and e["phase"] == "start"]
    assert len(starts) == 1 and starts[0]["class"] == "person"


@pytest.mark.footage
def test_an_animal_is_reported_never_an_intrusion(night_still, tmp_path):
    animal = Walker(height=10, x=40, foot_y=170, speed=25, start_s=ENTRY_S, contrast=60, animal=True)
    events = replay(tmp_path, frames(night_still, 12, walkers=(animal,)), {"animals": "report"})
    assert not [e for e in events if e["kind"] == "intrusion"]
    sightings = [e for e in events if e["kind"] == "animal"]
    assert len(sightings) == 1 and sightings[0]["boxes"]  # one event, not one per frame (animal_quiet_s)
