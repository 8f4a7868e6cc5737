"""Scoring per ../shared/data/SCORING.md: detection, onset latency, false alarms, pixel precision/recall/F1."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.scoring import AlarmSpan, decode_truth, pixel_counts, score_alarms

FPS = 10.0


def test_detected_range_and_onset_latency():
    score = score_alarms([AlarmSpan(105, 130)], [(100, 150)], [], FPS, 300)
    assert score.detected == 1 and score.latencies_s == [0.5] and score.false_alarms == 0


def test_alarm_raised_earlier_and_still_running_counts_with_zero_latency():
    score = score_alarms([AlarmSpan(90, 120)], [(100, 150)], [(80, 99)], FPS, 300)
    assert score.detected == 1 and score.latencies_s == [0.0]
    assert score.false_alarms == 0, "raised inside dont_care"


def test_missed_range_and_false_alarms():
    score = score_alarms([AlarmSpan(10, 20), AlarmSpan(200, 210)], [(100, 150)], [], FPS, 300)
    assert score.detected == 0 and score.missed == [(100, 150)]
    assert score.false_alarms == 2 and score.false_alarm_frames == [10, 200]
    assert score.scored_hours == pytest.approx(249 / FPS / 3600)
    assert score.false_alarms_per_hour == pytest.approx(2 / (249 / FPS / 3600))


def test_alarm_within_two_seconds_after_an_intrusion_is_not_false():
    spans = [AlarmSpan(100, 110), AlarmSpan(170, 175), AlarmSpan(171, 180, raised=False), AlarmSpan(175, 190)]
    score = score_alarms(spans, [(100, 150)], [], FPS, 300)
    assert score.false_alarms == 1 and score.false_alarm_frames == [175], "150 + 2 s = 170 is the last grace frame"


def test_pure_nuisance_clip_counts_every_alarm():
    score = score_alarms([AlarmSpan(5, 9)], [], [], FPS, 100)
    assert score.false_alarms == 1 and score.median_latency_s is None


def test_false_alarm_while_an_animal_is_in_view_is_also_an_animal_alarm():
    spans = [AlarmSpan(45, 50), AlarmSpan(120, 130)]
    score = score_alarms(spans, [], [], 10.0, 200, animals=[(40, 69)])
    assert score.false_alarms == 2 and score.animal_alarms == 1
    with pytest.raises(ValueError, match="animals"):
        score_alarms([], [], [], 10.0, 200, animals=[(150, 250)])


def test_bad_ranges_are_rejected():
    with pytest.raises(ValueError, match="intrusion range"):
        score_alarms([], [(50, 10)], [], FPS, 100)
    with pytest.raises(ValueError, match="beyond"):
        score_alarms([], [], [(90, 120)], FPS, 100)
    with pytest.raises(ValueError, match="fps"):
        score_alarms([], [], [], 0, 100)


def test_cdnet_encoding_shadow_is_background_unknown_not_scored():
    truth = np.array([[0, 50, 85, 170, 255, 255]], np.uint8)
    predicted = np.array([[255, 255, 255, 255, 255, 0]], np.uint8)
    counts = pixel_counts(predicted, truth, cdnet=True)
    assert (counts.tp, counts.fp, counts.fn) == (1, 2, 1)
    assert counts.precision == pytest.approx(1 / 3) and counts.recall == pytest.approx(0.5)
    assert counts.f1 == pytest.approx(2 / 5)
    foreground, scored = decode_truth(truth, cdnet=True)
    assert scored.tolist() == [[True, True, False, False, True, True]]


def test_binary_masks_and_empty_ground_truth():
    truth = np.array([[0, 255], [255, 0]], np.uint8)
    counts = pixel_counts(np.array([[0, 255], [0, 0]], np.uint8), truth, cdnet=False)
    assert (counts.tp, counts.fp, counts.fn) == (1, 0, 1)
    unscored = pixel_counts(np.zeros((2, 2), np.uint8), np.full((2, 2), 85, np.uint8), cdnet=True)
    assert unscored.frames == 0 and unscored.f1 is None
    with pytest.raises(ValueError, match="differ in size"):
        pixel_counts(np.zeros((2, 3), np.uint8), truth, cdnet=False)
