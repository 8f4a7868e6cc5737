"""The robustness sweep (evaluation/sweep.py): scaled configs, the table, and (slow) a footage subset."""

from __future__ import annotations

import os
import re

import pytest

from agent.cli import main
from agent.config import AgentConfig
from common.errors import ConfigError
from evaluation.sweep import MAIN_PARAMETERS, format_sweep, scaled_config, sweep
from tests.footage import require_footage
from tests.test_eval import _tiny_manifest


def test_scaled_config_changes_one_parameter_within_its_bounds():
    base = AgentConfig()
    config, value, note = scaled_config(base, "detection.travel", 1.3)
    assert value == pytest.approx(0.078) and config.detection.travel == pytest.approx(0.078) and not note
    assert config.detection.threshold == base.detection.threshold and config.events == base.events
    config, value, _ = scaled_config(base, "detection.threshold", 0.7)
    assert value == 13 and isinstance(config.detection.threshold, int)  # 18 x 0.7 = 12.6, rounded
    config, value, _ = scaled_config(base, "events.min_motion_frames", 1.3)
    assert value == 4  # 3 x 1.3 rounds back to 3: an integer moves by at least one
    config, value, note = scaled_config(base, "detection.scene_change_share", 1.3)
    assert value == 1 and "maximum" in note  # 0.8 x 1.3 is past the allowed 1
    with pytest.raises(ConfigError, match="unknown sweep parameter"):
        scaled_config(base, "detection.nope", 1.3)
    with pytest.raises(ConfigError, match="not a number"):
        scaled_config(base, "detection.animals", 1.3)


def test_every_main_parameter_can_be_scaled_both_ways():
    for parameter in MAIN_PARAMETERS:
        for factor in (0.7, 1.3):
            scaled_config(AgentConfig(), parameter, factor)


def test_sweep_on_a_small_manifest_rows_and_table(tmp_path):
    manifest = _tiny_manifest(tmp_path)
    rows = sweep([manifest], AgentConfig(), ("detection.travel", "detection.threshold"))
    assert [(row.parameter, row.factor) for row in rows] == [
        ("", 1.0), ("detection.travel", 0.7), ("detection.travel", 1.3), ("detection.threshold", 0.7),
        ("detection.threshold", 1.3)]
    assert all(row.intrusions == 1 for row in rows)
    baseline = rows[0]
    assert baseline.passed == (baseline.detected == 1 and baseline.false_alarms == 0
                               and baseline.worst_onset_s <= 2.0 and baseline.median_onset_s <= 1.0)
    table = format_sweep(rows)
    assert "detection.travel" in table and "(as configured)" in table and "rows meet the targets" in table
    with pytest.raises(ConfigError, match="unknown clip"):
        sweep([manifest], AgentConfig(), ("detection.travel",), clip_ids=["nope"])


def test_cli_sweep_prints_the_table_and_fails_when_a_row_fails(tmp_path, capsys):
    manifest = _tiny_manifest(tmp_path)
    code = main(["eval", str(manifest), "--sweep", "--param", "detection.travel"])
    out = capsys.readouterr().out
    assert "detection.travel" in out and "0.70" in out and "1.30" in out
    rows = [line for line in out.splitlines() if line.startswith(("detection.travel", "(as configured)"))]
    assert len(rows) == 3
    assert code == (0 if all(re.search(r"\syes(\s|$)", line) for line in rows) else 1)
    assert "slowest: tiny" in out  # each row names the clips that decide it


#: the sweep's slow tests run on the clips that decide most rows: the far slow walker at night, the light switch,
#: the waving trees (both cuts) and the foliage (false alarms) and the possum (animal alarms)
SUBSET_CLIPS = ["night-lane-people-far", "thermal-possum", "wallflower-lightswitch", "wallflower-wavingtrees",
                "wallflower-wavingtrees-raw", "sbi-foliage"]
#: the parameters whose 0.7x or 1.3x rows failed in an earlier full sweep of both manifests (3 Dec: 53/53 rows once
#: an unconfirmed track's prediction is limited and a tampered view needs a second of motion): activity_gain 0.7x
#: (foliage), startup_s 0.7x and background_s 1.3x (waving trees), threshold and patient_travel 1.3x (far walker)
DECIDING_PARAMETERS = ("detection.activity_gain", "detection.startup_s", "detection.background_s",
                       "detection.threshold", "detection.patient_travel", "detection.settle_s",
                       "detection.nuisance_gain", "events.min_motion_frames")


@pytest.mark.footage
@pytest.mark.slow
def test_targets_hold_with_the_deciding_parameters_off_by_30_percent_on_a_subset():
    if os.environ.get("SWEEP") != "1":
        pytest.skip("17 evaluations of 6 clips, minutes on 2 cores: SWEEP=1 runs it (the whole sweep: "
                    "pid-agent eval clips.json clips_night.json --sweep)")
    manifests = [require_footage("clips.json"), require_footage("clips_night.json")]
    rows = sweep(manifests, AgentConfig(), DECIDING_PARAMETERS, clip_ids=SUBSET_CLIPS, jobs=2)
    assert len(rows) == 1 + 2 * len(DECIDING_PARAMETERS)
    assert all(row.passed for row in rows), format_sweep(rows)
