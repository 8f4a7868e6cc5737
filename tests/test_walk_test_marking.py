"""Alarms raised during the installer's walk test say so, start and end, and are not signals for the ARC."""

from __future__ import annotations

from agent.arc.codes import signal_name
from agent.config import parse_config
from agent.pipeline import Agent
from common.clock import ManualClock
from drivers.camera.replay import ReplayCamera


def replay(tmp_path, walk_test: bool) -> list[dict]:
    from evaluation.demo import write_demo

    clip = tmp_path / "walk.mp4"
    write_demo(clip, seconds=14.0, width=320, height=180)
    config = parse_config({"data_dir": str(tmp_path / "data"), "camera": {"backend": "replay", "source": str(clip)},
                           "recorder": {"post_roll_s": 1.0}})
    clock = ManualClock()
    agent = Agent(config, ReplayCamera(clip, clock=clock, realtime=False), clock, upload=False)
    agent.reactions_walk_test = lambda: walk_test
    return [e for e in agent.run().events_published if e["kind"] == "intrusion"]


def test_walk_test_alarms_are_marked_and_kept_from_the_arc(tmp_path):
    start, end = replay(tmp_path, walk_test=True)
    assert start["walk_test"] is True and end["walk_test"] is True
    assert signal_name(start) is None and signal_name(end) is None


def test_ordinary_alarms_carry_no_walk_test_mark(tmp_path):
    start, end = replay(tmp_path, walk_test=False)
    assert "walk_test" not in start and "walk_test" not in end
    assert signal_name(start) == "intrusion_start" and signal_name(end) == "intrusion_end"
