"""A wall-clock step on a live unit (NTP's first sync on a Pi without RTC): events follow the new time at once and
the step itself is reported, so no two adjacent messages are an hour apart without saying why."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from agent.config import parse_config
from agent.pipeline import Agent
from common.clock import ManualClock
from drivers.camera.base import Camera
from drivers.camera.synthetic import SyntheticCamera

STEP_S = 3600.0
STEP_AT_FRAME = 30  # 3 s in; the demo figure crosses at 6-11 s


class LiveSceneCamera(Camera):
    """The demo scene delivered as a live camera does: each frame stamped on the monotonic clock as it arrives.
    The wall clock is stepped once, at STEP_AT_FRAME."""

    live = True

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.scene = SyntheticCamera(clock=clock, duration_s=16.0)
        self.fps = self.scene.fps

    def open(self) -> None:
        self.scene.open()

    def close(self) -> None:
        self.scene.close()

    def frames(self):
        for frame in self.scene.frames():
            self.clock.advance(1 / self.fps)
            if frame.index == STEP_AT_FRAME:
                self.clock.step_wall(STEP_S)
            yield dataclasses.replace(frame, ts=self.clock.monotonic())


def epoch(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def test_events_after_a_clock_step_are_on_the_new_clock_and_the_step_is_reported(tmp_path):
    clock = ManualClock(wall_start=1_800_000_000.0)
    camera = LiveSceneCamera(clock)
    config = parse_config({"data_dir": str(tmp_path / "data"), "recorder": {"post_roll_s": 1.0}})
    agent = Agent(config, camera, clock, upload=False)
    agent.on_frame = lambda frame: agent.stop() if frame.index >= camera.scene.frame_count - 1 else None
    events = list(agent.run().events_published)
    steps = [e for e in events if e["kind"] == "clock_step"]
    assert [s["stepped_s"] for s in steps] == [STEP_S] and steps[0]["frame"] == STEP_AT_FRAME
    start = next(e for e in events if e["kind"] == "intrusion" and e["phase"] == "start")
    # the alarm's time is the stepped clock's reading when its frame arrived, not the pre-step timeline
    frame_wall = 1_800_000_000.0 + STEP_S + (start["frame"] + 1) / camera.fps
    assert abs(epoch(start["ts"]) - frame_wall) < 0.01
