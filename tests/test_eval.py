"""Evaluation on the real footage (../shared/data/clips.json) against the detection targets, and the report
writers. The footage run takes ~30 s; it is done once per session."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.config import AgentConfig
from common.errors import ConfigError, SourceError
from evaluation.evaluate import evaluate, format_table, report_dict, write_json, write_plots
from tests.footage import require_footage

NUISANCE_CLIPS = ["wallflower-wavingtrees-raw", "wallflower-wavingtrees", "sbi-foliage", "wallflower-lightswitch",
                  "wallflower-timeofday", "wallflower-movedobject"]


@pytest.fixture(scope="module")
def report():
    manifest = require_footage("clips.json")
    return evaluate(manifest, AgentConfig())


@pytest.mark.footage
@pytest.mark.slow
def test_every_intrusion_detected_quickly(report):
    missed = {clip.id: clip.alarms.missed for clip in report.clips if clip.alarms.missed}
    assert report.intrusions >= 14 and report.detected == report.intrusions, f"missed: {missed}"
    assert report.median_latency_s <= 1.0, format_table(report)
    assert max(report.latencies_s) <= 2.0, format_table(report)


@pytest.mark.footage
@pytest.mark.slow
def test_no_false_alarms_from_trees_light_or_moved_objects(report):
    for clip_id in NUISANCE_CLIPS:
        clip = report.clip(clip_id)
        assert clip.alarms.false_alarms == 0, f"{clip_id}: false alarms at frames {clip.alarms.false_alarm_frames}"
    assert report.false_alarms == 0, format_table(report)


@pytest.mark.footage
@pytest.mark.slow
def test_highway_foreground_f1(report):
    pixels = report.clip("cdnet-highway").pixels
    assert pixels is not None and pixels.frames == 1231, "frames 470..1700 (1-based) carry scored masks"
    assert pixels.f1 >= 0.80, format_table(report)


@pytest.mark.footage
@pytest.mark.slow
def test_report_writers(report, tmp_path):
    table = format_table(report)
    assert "cdnet-highway" in table and "TOTAL" in table
    out = tmp_path / "eval.json"
    write_json(report, out)
    data = json.loads(out.read_text())
    assert data["totals"]["detected"] == report.detected
    assert {clip["id"] for clip in data["clips"]} == {clip.id for clip in report.clips}
    assert report_dict(report)["clips"][0]["alarm_spans"] == data["clips"][0]["alarm_spans"]
    plots = write_plots(report, tmp_path / "plots")
    assert [path.stem for path in plots] == [clip.id for clip in report.clips] + ["summary"]
    image = cv2.imread(str(plots[0]))
    assert image is not None and image.shape[1] > 500


@pytest.fixture(scope="module")
def night_report():
    manifest = require_footage("clips_night.json")
    return evaluate(manifest, AgentConfig())


@pytest.mark.footage
@pytest.mark.slow
def test_night_person_far_away_detected(night_report):
    clip = night_report.clip("night-lane-people-far")
    assert clip.alarms.detected == clip.alarms.intrusions == 1, format_table(night_report)
    # people ~20 px tall at 720 rows walking slowly towards the camera: 1.40 s (a track held patient_s needs
    # half the travel, less the longer it is held, and sooner the more steadily it moves one way; start-up
    # convergence no longer marks the view busy)
    assert clip.alarms.worst_latency_s <= 2.0, format_table(night_report)


@pytest.mark.footage
@pytest.mark.slow
def test_night_ir_thermal_and_animals_raise_no_false_alarm(night_report):
    possum = night_report.clip("thermal-possum")
    assert possum.alarms.false_alarms == 0, f"possum alarmed at frames {possum.alarms.false_alarm_frames}"
    assert night_report.false_alarms == 0, format_table(night_report)


def _tiny_manifest(tmp_path: Path) -> Path:
    """A real image-sequence clip: still scene, then a square walks across (frames 30..59)."""
    frames = tmp_path / "clip"
    frames.mkdir()
    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur(rng.integers(0, 255, (120, 160), dtype=np.uint8), (0, 0), 3)
    for index in range(70):
        image = bg.copy()
        if 50 <= index < 65:
            x = 4 * (index - 50)
            image[50:70, x:x + 20] = 250
        cv2.imwrite(str(frames / f"f{index}.png"), image)
    manifest = tmp_path / "clips.json"
    manifest.write_text(json.dumps({"format": 1, "clips": [
        {"id": "tiny", "source": "clip/f*.png", "fps": 10, "frames": 70, "intrusions": [[50, 64]],
         "dont_care": []}]}))
    return manifest


def test_evaluate_small_manifest_end_to_end(tmp_path):
    report = evaluate(_tiny_manifest(tmp_path), AgentConfig())
    clip = report.clip("tiny")
    assert clip.frames == 70 and clip.alarms.detected == 1 and clip.alarms.false_alarms == 0
    assert clip.spans and clip.spans[0].start >= 50


def test_plots_of_a_small_manifest(tmp_path):
    report = evaluate(_tiny_manifest(tmp_path), AgentConfig())
    plots = write_plots(report, tmp_path / "plots")
    assert [path.name for path in plots] == ["tiny.png", "summary.png"]
    for path in plots:
        image = cv2.imread(str(path))
        assert image is not None and image.shape[1] >= 1000 and image.shape[0] >= 150
        assert image.std() > 10  # drawn, not blank


def test_manifest_errors_are_clear(tmp_path):
    with pytest.raises(SourceError, match="manifest not found"):
        evaluate(tmp_path / "missing.json", AgentConfig())
    manifest = _tiny_manifest(tmp_path)
    with pytest.raises(ConfigError, match="unknown clip id"):
        evaluate(manifest, AgentConfig(), ["nope"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": 1, "clips": [{"id": "x", "fps": 10}]}))
    with pytest.raises(ConfigError, match="source"):
        evaluate(bad, AgentConfig())
    wrong_count = tmp_path / "count.json"
    data = json.loads(manifest.read_text())
    data["clips"][0]["frames"] = 71
    wrong_count.write_text(json.dumps(data))
    with pytest.raises(SourceError, match="71 frames"):
        evaluate(wrong_count, AgentConfig())
