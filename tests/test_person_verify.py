"""The analyzer's second look (agent/person_verify.py): an animal-shaped box that is a real person counts as
intrusion motion after two confirmations, a real animal never does, checks are rate-limited and capped, boxes too
small are never checked, and an alarm's class becomes 'person' when HOG confirms it. Real frames throughout
(UCSD walkway pedestrians, the thermal possum), scaled up as a camera with more pixels than the detection image
would record them."""

from __future__ import annotations

import glob

import cv2
import numpy as np
import pytest

from agent.analyzer import Analyzer
from agent.config import AgentConfig, parse_config
from agent.events import AlarmStarted, AnimalSeen
from agent.person_verify import MAX_OBJECT_CHECKS, READMIT_CONFIRMATIONS, RECHECK_S, PersonVerifier
from drivers.camera.base import Frame
from evaluation.evaluate import evaluate, format_table
from models.motion import Box, MotionResult
from tests.footage import require_footage
from tests.hard_cases import Walker, frames, still_from
from tests.test_person_check import mask_boxes

#: the recorded frame is this many times the detection image (1280x720 over 320x180)
FULL = 4


def full_size(luma: np.ndarray) -> np.ndarray:
    return cv2.resize(luma, None, fx=FULL, fy=FULL, interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def pedestrian():
    """(detection-size frames, the tallest pedestrian's box in each) of the first UCSD walkway frames."""
    root = require_footage("09_ucsd_bgsub_mini/peds")
    out = []
    for number in (1, 2, 3, 4):
        luma = cv2.imread(str(root / "in" / f"frame_{number}.jpg"), cv2.IMREAD_GRAYSCALE)
        x, y, w, h = max(mask_boxes(str(root / "groundtruth" / f"gt{number:04d}.png"), 12), key=lambda b: b[3])
        out.append((luma, (x, y, w, h)))
    return out


@pytest.fixture(scope="module")
def possum():
    """(detection-size frames, the possum's box: where it differs from the empty lawn) of the thermal clip."""
    paths = sorted(glob.glob(str(require_footage("21_thermal_possum_walkthrough_animal/frames") / "f*.png")))
    empty = cv2.imread(paths[20], cv2.IMREAD_GRAYSCALE).astype(np.int16)
    out = []
    for path in paths[45:62]:
        luma = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        changed = cv2.dilate((np.abs(luma.astype(np.int16) - empty) > 40).astype(np.uint8), np.ones((5, 5)))
        _count, _labels, stats, _ = cv2.connectedComponentsWithStats(changed)
        largest = 1 + int(np.argmax(stats[1:, 4]))
        out.append((luma, tuple(int(v) for v in stats[largest, :4])))
    return out


def shaped(box: tuple[int, int, int, int], label: str) -> Box:
    x, y, w, h = box
    return Box(x, y, w, h, area=w * h // 2, zone="", label=label)


def seen(luma: np.ndarray, animal: Box | None = None, counted: Box | None = None) -> MotionResult:
    """What the detector reports: an animal-shaped object (not intrusion motion), or a counted one."""
    boxes = (counted,) if counted is not None else ()
    return MotionResult(bool(boxes), 0.0, boxes, np.zeros(luma.shape, np.uint8), animals=(animal,) if animal else ())


@pytest.mark.footage
def test_an_animal_shaped_person_counts_after_two_confirmations(pedestrian):
    verifier = PersonVerifier()
    results = []
    for index, ts in enumerate((0.0, 0.1, RECHECK_S, RECHECK_S + 0.1)):
        luma, box = pedestrian[index]
        results.append(verifier.frame(seen(luma, shaped(box, "animal")), full_size(luma), luma.shape, ts))
    first, between, confirmed, after = results
    assert not first.motion and first.animals  # one confirmation is not enough
    assert not between.motion                 # nor is a check repeated before RECHECK_S
    assert verifier.checks == READMIT_CONFIRMATIONS
    for result in (confirmed, after):
        assert result.motion and result.score > 0 and result.animals == ()
        assert [box.label for box in result.boxes] == ["person"]
    assert verifier.checks == READMIT_CONFIRMATIONS  # a confirmed object is not checked again


@pytest.mark.footage
def test_the_possum_never_counts_and_is_checked_sparingly(possum):
    verifier = PersonVerifier()
    results = [verifier.frame(seen(luma, shaped(box, "animal")), full_size(luma), luma.shape, index / 9.0)
               for index, (luma, box) in enumerate(possum)]
    assert not any(result.motion for result in results)
    assert all(result.animals and result.animals[0].label == "animal" for result in results)
    span = (len(possum) - 1) / 9.0
    assert 1 <= verifier.checks <= span / RECHECK_S + 1


@pytest.mark.footage
def test_an_object_in_view_for_long_is_checked_a_bounded_number_of_times(possum):
    luma, box = possum[5]
    image = full_size(luma)
    verifier = PersonVerifier()
    for index in range(200):  # 20 s at 10 fps
        verifier.frame(seen(luma, shaped(box, "animal")), image, luma.shape, index / 10.0)
    assert verifier.checks == MAX_OBJECT_CHECKS


@pytest.mark.footage
def test_boxes_too_small_at_full_size_are_never_checked(possum):
    verifier = PersonVerifier()
    for index, (luma, box) in enumerate(possum):
        result = verifier.frame(seen(luma, shaped(box, "animal")), luma, luma.shape, index / 9.0)  # 160x120 only
        assert not result.motion
    assert verifier.checks == 0


@pytest.mark.footage
def test_an_alarm_on_a_confirmed_person_says_person(pedestrian, possum):
    verifier = PersonVerifier()
    luma, box = pedestrian[0]
    other = (shaped((0, 0, 10, 10), "unknown"),)
    boxes = verifier.alarm_boxes((shaped(box, "unknown"), *other), full_size(luma), luma.shape, 0.0)
    assert [b.label for b in boxes] == ["person", "unknown"]  # only the largest object decides the class
    luma, box = possum[5]
    unknown = (shaped(box, "vehicle"),)
    assert verifier.alarm_boxes(unknown, full_size(luma), luma.shape, 5.0) == unknown  # never a veto either
    assert verifier.checks == 2


@pytest.mark.footage
def test_a_person_shaped_alarm_needs_no_check(pedestrian):
    verifier = PersonVerifier()
    luma, box = pedestrian[0]
    boxes = (shaped(box, "person"),)
    assert verifier.alarm_boxes(boxes, full_size(luma), luma.shape, 0.0) == boxes
    assert verifier.checks == 0


# through the analyzer ------------------------------------------------------------------------------------------
ENTRY_S = 5.0


def analysed(config: AgentConfig, sequence) -> tuple[Analyzer, list]:
    analyzer = Analyzer(config)
    out = []
    for index, (ts, luma) in enumerate(sequence):
        out.append(analyzer.process(Frame(ts, index, full_size(luma), luma)))
    return analyzer, out


@pytest.fixture(scope="module")
def animal_crossing():
    still = still_from(str(require_footage("14_night_lane_people_far/cctv.mp4")))
    animal = Walker(height=12, x=40, foot_y=170, speed=25, start_s=ENTRY_S, contrast=60, animal=True)
    return frames(still, 12, walkers=(animal,), noise=2.0)


@pytest.mark.footage
@pytest.mark.parametrize("animals", ["ignore", "report"])
def test_an_animal_checked_at_full_size_raises_no_alarm(animal_crossing, animals):
    analyzer, analyses = analysed(parse_config({"detection": {"animals": animals}}), animal_crossing)
    events = [event for analysis in analyses for event in analysis.events]
    assert not any(isinstance(event, AlarmStarted) for event in events)
    assert not any(analysis.result.motion for analysis in analyses)
    assert analyzer.verifier.checks >= 1  # it was large enough to look at
    reported = [event for event in events if isinstance(event, AnimalSeen)]
    assert bool(reported) == (animals == "report")
    assert any(analysis.result.animals for analysis in analyses) == (animals == "report")


@pytest.mark.footage
def test_without_the_check_the_detector_keeps_its_own_animal_setting(animal_crossing):
    analyzer, analyses = analysed(parse_config({"detection": {"person_check": False}}), animal_crossing)
    assert analyzer.verifier is None and analyzer.detector.settings.animals == "ignore"
    assert not any(analysis.result.animals or analysis.result.motion for analysis in analyses)


@pytest.mark.footage
@pytest.mark.slow
def test_the_night_footage_alarms_alike_with_and_without_the_check():
    """On the night manifest the check changes no alarm: every intrusion at the same onset, the possum silent."""
    manifest = require_footage("clips_night.json")
    checked = evaluate(manifest, AgentConfig())
    plain = evaluate(manifest, parse_config({"detection": {"person_check": False}}))
    assert checked.clip("thermal-possum").alarms.animal_alarms == 0, format_table(checked)
    assert checked.false_alarms == 0 and checked.detected == checked.intrusions, format_table(checked)
    for ours, theirs in zip(checked.clips, plain.clips, strict=True):
        assert ours.spans == theirs.spans, ours.id
        assert ours.alarms.latencies_s == theirs.alarms.latencies_s, ours.id


def test_new_detection_settings_bring_a_new_detector_and_check():
    """The commissioning page applies new zones through set_detection: the check follows the new settings."""
    analyzer = Analyzer(AgentConfig())
    assert analyzer.verifier is not None and analyzer.detector.settings.animals == "report"  # listed for the check
    changed = parse_config({"detection": {"person_check": False, "animals": "report", "threshold": 30}}).detection
    analyzer.set_detection(changed)
    assert analyzer.verifier is None and analyzer.detector.settings == changed


def test_no_check_on_a_panorama_strip():
    """On a fisheye's unwrapped strip people are not upright and boxes are not the recorded frame's: no check."""
    analyzer = Analyzer(parse_config({"panorama": {"enabled": True}}))
    assert analyzer.verifier is None and analyzer.detector.settings.animals == "ignore"


@pytest.mark.footage
def test_one_check_per_frame_and_each_object_in_turn(possum):
    """Two animal-shaped objects in view: one check per frame, the second object's on the next frame."""
    luma, box = possum[5]
    x, y, w, h = box
    image = full_size(luma)
    pair = (shaped(box, "animal"), shaped((min(x + w + 20, luma.shape[1] - w), y, w, h), "animal"))
    verifier = PersonVerifier()
    counts = []
    for index in range(4):
        result = MotionResult(False, 0.0, (), np.zeros(luma.shape, np.uint8), animals=pair)
        verifier.frame(result, image, luma.shape, index / 10.0)
        counts.append(verifier.checks)
    assert counts == [1, 2, 2, 2]
