"""A running alarm's `update` events through a whole replay: between start and end, at most 1 Hz, typed."""

from __future__ import annotations

import itertools
import json
from datetime import datetime

import pytest

from agent.config import load_config
from agent.uplink.messages import EVENT, AlarmUpdate
from common.errors import ConfigError
from tests.test_ux import pid_agent, short_clip  # noqa: F401 - the module fixture is used by name

__all__ = ["short_clip"]


def test_a_replayed_alarm_sends_updates_between_start_and_end(tmp_path, short_clip):  # noqa: F811
    events_path = tmp_path / "events.jsonl"
    result = pid_agent("replay", short_clip, "--fast", "--offline", "--data-dir", tmp_path / "data",
                       "--events", events_path, env={"PID_AGENT_EVENTS__UPDATE_INTERVAL_S": "1"})
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in events_path.read_text().splitlines()]
    events = [EVENT.validate_python(line) for line in lines]  # each one a model of the contract
    assert [event.phase for event in events][0] == "start" and events[-1].phase == "end"
    updates = [event for event in events if isinstance(event, AlarmUpdate)]
    assert len(updates) >= 2 and len(updates) == len(events) - 2
    start = events[0]
    assert {update.alarm_event_id for update in updates} == {start.event_id}
    assert len({update.event_id for update in updates} | {start.event_id}) == len(updates) + 1
    for update in updates:
        assert update.boxes and len(update.labels) == len(update.boxes) and update.image_size == start.image_size
        assert "bearings_deg" not in lines[events.index(update)]  # no panorama: no bearing keys, as on a start
    times = [datetime.fromisoformat(event.ts.replace("Z", "+00:00")) for event in [start, *updates]]
    assert all((later - earlier).total_seconds() >= 1.0 for earlier, later in itertools.pairwise(times))
    frames = [event.frame for event in [start, *updates]]
    assert all(later - earlier >= 10 for earlier, later in itertools.pairwise(frames))  # 10 fps: 1 s apart
    # the figure walks across: the updates follow it
    assert updates[-1].boxes[0][0] > updates[0].boxes[0][0]


def test_updates_are_off_by_default_and_never_faster_than_1_hz():
    assert load_config(None, environ={}).events.update_interval_s == 0
    with pytest.raises(ConfigError, match=r"events.*update_interval_s \(0.5\) must be 0 \(off\) or at least 1"):
        load_config(None, environ={"PID_AGENT_EVENTS__UPDATE_INTERVAL_S": "0.5"})
