"""The armed schedule inside the whole agent, on a recording timed by an injected clock."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from agent.config import parse_config
from agent.pipeline import Agent
from common.clock import ManualClock
from drivers.camera.replay import ReplayCamera

LONDON = ZoneInfo("Europe/London")


@pytest.fixture(scope="module")
def walk_clip(tmp_path_factory):
    from evaluation.demo import write_demo

    path = tmp_path_factory.mktemp("walk") / "walk.mp4"
    write_demo(path, seconds=14.0, width=320, height=180)  # a figure crosses from 6 s to 11 s
    return path


def run_at(clip, tmp_path, local_start: datetime, armed: bool = True):
    config = parse_config({
        "data_dir": str(tmp_path / "data"), "events": {"armed": armed}, "recorder": {"post_roll_s": 1.0},
        "schedule": {"timezone": "Europe/London", "periods": [{"days": ["mon"], "start": "18:00", "end": "19:00"}]},
    })
    clock = ManualClock(wall_start=local_start.timestamp())
    summary = Agent(config, ReplayCamera(clip, clock=clock), clock, upload=False).run()
    return [(e["kind"], e.get("phase"), e.get("armed"), e["frame"]) for e in summary.events_published]


def test_unit_arms_when_its_armed_hours_begin(walk_clip, tmp_path):
    # Monday 17:59:58 local: disarmed at start, armed 2 s in, the figure at 6 s raises an alarm
    events = run_at(walk_clip, tmp_path, datetime(2026, 11, 23, 17, 59, 58, tzinfo=LONDON))
    assert events[0] == ("armed", None, False, 0)
    assert events[1] == ("armed", None, True, 20)
    assert [kind_phase[:2] for kind_phase in events[2:]] == [("intrusion", "start"), ("intrusion", "end")]


def test_unit_disarms_when_its_armed_hours_end(walk_clip, tmp_path):
    # Monday 18:59:57 local: armed at start, disarmed at 19:00 (3 s in), before the figure arrives
    events = run_at(walk_clip, tmp_path, datetime(2026, 11, 23, 18, 59, 57, tzinfo=LONDON))
    assert events == [("armed", None, False, 30)]


def test_config_disarmed_unit_stays_disarmed_in_armed_hours(walk_clip, tmp_path):
    events = run_at(walk_clip, tmp_path, datetime(2026, 11, 23, 18, 10, 0, tzinfo=LONDON), armed=False)
    assert all(kind != "intrusion" for kind, *_ in events)
