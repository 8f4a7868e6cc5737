"""A recording and its PIR script through the whole agent: confirmation sources, sensor events, outputs."""

from __future__ import annotations

import pytest

from agent.config import parse_config
from agent.pipeline import Agent
from common.clock import ManualClock
from drivers.camera.replay import ReplayCamera

GPIO = {"inputs": [{"id": "pir-east", "pin": 17, "kind": "pir", "zone": "yard", "debounce_ms": 100},
                   {"id": "lid", "pin": 6, "kind": "tamper", "debounce_ms": 50}],
        "outputs": [{"id": "strobe", "pin": 22, "kind": "strobe"}, {"id": "siren", "pin": 23, "kind": "siren"}]}


@pytest.fixture(scope="module")
def walk_clip(tmp_path_factory):
    from evaluation.demo import write_demo

    path = tmp_path_factory.mktemp("walk") / "walk.mp4"
    write_demo(path, seconds=14.0, width=320, height=180)
    return path


def run_agent(clip, tmp_path, script_rows, mode, policy="both"):
    script = clip.with_name(clip.name + ".pir.csv")  # the sidecar a replay carries its PIR activity in
    script.write_text("ts,input,level\n" + "".join(f"{ts},{ref},{level}\n" for ts, ref, level in script_rows))
    config = parse_config({
        "data_dir": str(tmp_path / "data"), "camera": {"backend": "replay", "source": str(clip)},
        "gpio": GPIO, "fusion": {"zones": [{"zone": "yard", "policy": policy}], "window_s": 3.0},
        "signalling": {"mode": mode, "strobe_pattern_ms": [300, 200], "strobe_s": 4.0, "siren": True,
                       "siren_s": 2.0},
        "recorder": {"post_roll_s": 1.0},
    })
    clock = ManualClock()
    camera = ReplayCamera(clip, clock=clock, realtime=False)
    agent = Agent(config, camera, clock, upload=False)
    summary = agent.run()
    return summary.events_published, agent.gpio.history


def on_periods(history, output_id):
    periods, start = [], None
    for ts, out, on in history:
        if out == output_id and on:
            start = ts
        elif out == output_id and start is not None:
            periods.append((round(start, 3), round(ts, 3)))
            start = None
    return periods


def test_pir_and_video_confirm_the_alarm_and_overt_mode_drives_outputs(walk_clip, tmp_path):
    events, history = run_agent(walk_clip, tmp_path, [(6.8, "pir-east", 1), (10.5, "pir-east", 0),
                                                      (12.0, "lid", 1)], "overt")
    intrusions = [e for e in events if e["kind"] == "intrusion"]
    assert [e["phase"] for e in intrusions] == ["start", "end"]
    start, end = intrusions
    # video sees the figure from ~6.2 s but the yard needs the PIR too: its edge at 6.8 s is reported after the
    # 0.1 s debounce, then three confirmed frames raise the alarm on frame 71 (7.1 s)
    assert start["frame"] == 71
    assert start["confirmed_by"] == end["confirmed_by"] == ["video", "pir:pir-east"]
    sensors = [(e["kind"], e["input"], e.get("active", e.get("open")))
               for e in events if e["kind"] in ("pir", "tamper")]
    assert sensors == [("pir", "pir-east", True), ("pir", "pir-east", False), ("tamper", "lid", True)]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    strobe = on_periods(history, "strobe")
    assert strobe[0][0] == pytest.approx(7.1) and len(strobe) == 8  # 4 s of a 0.5 s pattern
    assert on_periods(history, "siren") == [(pytest.approx(7.1), pytest.approx(9.1))]
    assert not any(on for _, _, on in history[-2:])  # safe state on exit


def test_video_alone_does_not_alarm_where_both_are_required(walk_clip, tmp_path):
    events, history = run_agent(walk_clip, tmp_path, [], "overt")
    assert [e for e in events if e["kind"] == "intrusion"] == []
    assert not any(on for _, _, on in history)


def test_covert_mode_alarms_but_keeps_every_output_off(walk_clip, tmp_path):
    events, history = run_agent(walk_clip, tmp_path, [(6.8, "pir-east", 1), (10.5, "pir-east", 0)], "covert")
    intrusions = [e for e in events if e["kind"] == "intrusion"]
    assert len(intrusions) == 2 and intrusions[0]["confirmed_by"] == ["video", "pir:pir-east"]
    assert history and not any(on for _, _, on in history)  # only the safe-state writes


def run_two_zones(clip, tmp_path, script_rows):
    """The figure walks in zone "gate" (the whole picture but a corner); zone "yard" is that far corner. Each zone
    has its own PIR and needs video and PIR together."""
    script = clip.with_name(clip.name + ".pir.csv")
    script.write_text("ts,input,level\n" + "".join(f"{ts},{ref},{level}\n" for ts, ref, level in script_rows))
    yard = [[0.0, 0.0], [0.04, 0.0], [0.04, 0.04], [0.0, 0.04]]
    gate = [[0.05, 0.05], [1.0, 0.05], [1.0, 1.0], [0.05, 1.0]]
    config = parse_config({
        "data_dir": str(tmp_path / "data"), "camera": {"backend": "replay", "source": str(clip)},
        "detection": {"zones": [{"name": "gate", "polygon": gate}, {"name": "yard", "polygon": yard}]},
        "gpio": {"inputs": [{"id": "pir-gate", "pin": 17, "kind": "pir", "zone": "gate", "debounce_ms": 100},
                            {"id": "pir-yard", "pin": 27, "kind": "pir", "zone": "yard", "debounce_ms": 100}]},
        "fusion": {"zones": [{"zone": "gate", "policy": "both"}, {"zone": "yard", "policy": "both"}],
                   "window_s": 3.0},
        "recorder": {"post_roll_s": 1.0},
    })
    clock = ManualClock()
    agent = Agent(config, ReplayCamera(clip, clock=clock, realtime=False), clock, upload=False)
    return [e for e in agent.run().events_published if e["kind"] == "intrusion"]


def test_video_in_one_zone_and_the_pir_of_another_confirm_neither(walk_clip, tmp_path):
    # the yard's PIR fires while the figure walks through the gate: under "both" neither zone has both
    assert run_two_zones(walk_clip, tmp_path, [(5.0, "pir-yard", 1), (12.0, "pir-yard", 0)]) == []


def test_video_and_the_pir_of_the_same_zone_confirm_it(walk_clip, tmp_path):
    intrusions = run_two_zones(walk_clip, tmp_path, [(5.0, "pir-gate", 1), (12.0, "pir-gate", 0)])
    assert [e["phase"] for e in intrusions] == ["start", "end"]
    assert intrusions[0]["zone"] == "gate" and intrusions[0]["confirmed_by"] == ["video", "pir:pir-gate"]
