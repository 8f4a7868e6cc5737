"""Dual-technology confirmation per zone and detector-fault watch, driven by timestamps only."""

import pytest
from pydantic import ValidationError

from agent.config import parse_config
from common.errors import ConfigError
from models.fusion import FaultReport, Fusion, FusionSettings, order_sources, zone_problems

PIRS = {"pir-east": "east", "pir-east2": "east", "pir-west": "west"}
FPS = 10


def fusion(**overrides) -> Fusion:
    return Fusion(FusionSettings(**overrides), PIRS)


def run(f: Fusion, start: float, end: float, motion_zones=()) -> list:
    """Step frames from start to end (exclusive) with the same video motion; return the results."""
    results = []
    for n in range(round(start * FPS), round(end * FPS)):
        results.append(f.step(n / FPS, motion_zones))
    return results


def test_default_policy_for_pir_zones_is_both_and_zones_without_pir_are_video():
    f = fusion(zones=[{"zone": "gate", "policy": "video"}])
    assert (f.policy("east"), f.policy("west"), f.policy("gate"), f.policy("elsewhere")) == \
           ("both", "both", "video", "video")
    assert Fusion(FusionSettings(), {}).step(0.0, [None]).zones == ("default",)  # no PIRs: video alone, as before


def test_both_needs_video_and_pir_within_the_window():
    f = fusion(window_s=2.0)
    assert not any(r.confirmed for r in run(f, 0, 3, ["east"]))    # video alone: not enough outdoors
    f.observe_pir(3.5, "pir-east", True)                           # PIR fires 0.5 s after the video stopped
    result = f.step(3.5, [])
    assert result.confirmed and result.zones == ("east",)
    assert result.confirmed_by == ("video", "pir:pir-east")
    f.observe_pir(4.0, "pir-east", False)
    assert not f.step(4.1, []).confirmed                           # nothing happening now
    assert not any(r.confirmed for r in run(f, 10, 12, ["east"]))  # video again, PIR last seen 6 s ago


def test_pir_alone_in_the_window_does_not_confirm_another_zone():
    f = fusion(window_s=2.0)
    f.observe_pir(1.0, "pir-west", True)
    results = run(f, 1.0, 2.0, ["east"])
    assert not any(r.confirmed for r in results)
    both = f.step(2.0, ["east", "west"])
    assert both.zones == ("west",) and both.confirmed_by == ("video", "pir:pir-west")


def test_whole_frame_motion_counts_in_every_zone_and_each_pir_is_named():
    f = fusion()
    f.observe_pir(0.0, "pir-east2", True)
    f.observe_pir(0.2, "pir-west", True)
    result = f.step(0.3, [None])
    assert result.zones == ("east", "west")
    assert result.confirmed_by == ("video", "pir:pir-east2", "pir:pir-west")


@pytest.mark.parametrize("policy, video_only, pir_only", [
    ("video", True, False), ("pir", False, True), ("either", True, True), ("both", False, False)])
def test_single_technology_policies(policy, video_only, pir_only):
    f = fusion(zones=[{"zone": "east", "policy": policy}], window_s=1.0)
    assert f.step(0.0, ["east"]).confirmed is video_only
    f.observe_pir(10.0, "pir-east", True)
    pir_result = f.step(10.0, [])
    assert pir_result.confirmed is pir_only
    if pir_only:
        assert pir_result.confirmed_by == ("pir:pir-east",)


def test_listed_zone_needing_a_pir_without_one_is_a_config_error():
    settings = FusionSettings(zones=[{"zone": "north", "policy": "both"}, {"zone": "south", "policy": "video"}])
    assert zone_problems(settings, PIRS) == ["fusion zone 'north' has policy 'both' but no PIR input is in that zone"]
    with pytest.raises(ValueError, match="fusion zone 'north'"):  # models raise ValueError only
        Fusion(settings, PIRS)
    with pytest.raises(ValidationError, match=r"lists zone\(s\) \['east'\] more than once"):
        FusionSettings(zones=[{"zone": "east", "policy": "pir"}, {"zone": "east", "policy": "both"}])


def test_the_config_turns_a_zone_without_its_pir_into_a_config_error():
    with pytest.raises(ConfigError, match="fusion zone 'north' has policy 'both' but no PIR input"):
        parse_config({"fusion": {"zones": [{"zone": "north", "policy": "both"}]}})
    with pytest.raises(ValueError, match="unknown PIR 'pir-x'"):
        fusion().observe_pir(0.0, "pir-x", True)


def test_pir_firing_without_video_for_long_is_a_suspected_fault_until_corroborated():
    f = fusion(pir_fault_s=600, pir_fault_activations=3, window_s=2.0)
    faults = []
    for minute in range(0, 15, 2):            # the east PIR fires every 2 minutes; the camera never sees motion
        f.observe_pir(minute * 60.0, "pir-east", True)
        f.observe_pir(minute * 60.0 + 3, "pir-east", False)
        faults += f.step(minute * 60.0 + 5, []).faults
    assert faults == [FaultReport(605.0, "pir:pir-east", "east", "pir_without_video", since=0.0, count=6,
                                  active=True)]
    assert [r.detector for r in f.active_faults()] == ["pir:pir-east"]  # the other east PIR is not blamed
    f.observe_pir(1000.0, "pir-east", True)
    cleared = f.step(1000.5, ["east"]).faults  # seen together at last
    assert cleared == (FaultReport(1000.5, "pir:pir-east", "east", "pir_without_video", 0.0, 6, active=False),)
    assert f.active_faults() == []


def test_silent_pir_while_video_keeps_moving_is_a_suspected_fault():
    f = fusion(silent_pir_fault_s=3600, silent_pir_episodes=4, window_s=2.0)
    faults = []
    for hour in range(3):                    # video motion in the west zone twice an hour; its PIR never fires
        for start in (hour * 3600.0, hour * 3600.0 + 1800):
            for r in run(f, start, start + 1.0, ["west"]):
                faults += r.faults
    # raised once there are 4 episodes (the 4th at 5400 s) spanning at least an hour; not repeated after
    assert [(r.detector, r.reason, r.ts, r.since, r.count, r.active) for r in faults] == [
        ("pir:pir-west", "pir_silent_while_video_moves", 5400.0, 0.0, 4, True)]
    f.observe_pir(9000.0, "pir-west", True)  # the PIR works after all (it was masked, now cleaned)
    cleared = f.step(9000.1, []).faults
    assert [(r.detector, r.active) for r in cleared] == [("pir:pir-west", False)]


def test_order_sources_puts_video_first():
    assert order_sources(["pir:b", "video", "pir:a", "pir:b"]) == ("video", "pir:a", "pir:b")
