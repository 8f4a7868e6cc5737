"""A live camera simulator for the camera and clock faults, and one agent run against a real mosquitto with it.

The camera (behind the driver interface, like the Pi's) plays the demo walk again and again, each frame stamped on
a ManualClock as it arrives, and at chosen frames fails the way real cameras do: the driver raises, the sensor
stalls (no frame for a while), or it freezes (repeats its last frame, same timestamp). The clock is the agent's
injected clock, so the same camera also steps the wall clock (NTP's first sync, a person setting the time).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from agent.config import parse_config
from agent.pipeline import Agent, RunSummary
from common.clock import ManualClock
from common.errors import HardwareError
from drivers.camera.base import Camera, Frame
from drivers.camera.synthetic import SyntheticCamera
from station.monitor import Monitor
from tests.faults.harness import ALARM_SETTINGS, DEVICE, SEGMENT_S, delivery_problems, received_all

FPS = 10.0
WALK_FRAMES = int(SEGMENT_S * FPS)
QUIET_FRAMES = (15, 45)  # of each walk: the figure crosses at 6-11 s (frames 60-110), the alarm ends by ~125


@dataclass
class Fault:
    kind: str            # error | stall | freeze | step
    amount: float = 0.0  # stall/freeze: seconds without a new frame; step: seconds the wall clock jumps


class ScriptedCamera(Camera):
    live = True
    fps = FPS

    def __init__(self, clock: ManualClock, walks: int, plan: dict[int, Fault]) -> None:
        self.clock, self.plan = clock, dict(plan)
        self.frame_count_total = walks * WALK_FRAMES
        scene = SyntheticCamera(clock=ManualClock(), width=320, height=180, fps=FPS, duration_s=SEGMENT_S)
        with scene:
            self._walk = list(scene.frames())  # one walk rendered once, played `walks` times
        self.next_index = 0
        self.injected: Counter[str] = Counter()
        self.walls: dict[int, float] = {}  # frame index -> wall time it arrived at (after any step)
        #: set by the run: how many stalls the agent has reported so far (a stall waits for its supervisor)
        self.stalls_reported: Callable[[], int] = lambda: 0

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def frames(self) -> Iterator[Frame]:
        while self.next_index < self.frame_count_total:
            index = self.next_index
            self.next_index += 1  # a frame the driver failed on is gone, as on a live sensor
            fault = self.plan.pop(index, None)
            if fault is not None:
                yield from self._inject(fault, index)
            self.clock.advance(1 / FPS)
            self.walls[index] = self.clock.wall()
            scene = self._walk[index % WALK_FRAMES]
            yield Frame(self.clock.monotonic(), index, scene.image, scene.luma)

    def _inject(self, fault: Fault, index: int) -> Iterator[Frame]:
        self.injected[fault.kind] += 1
        if fault.kind == "error":
            raise HardwareError(f"camera sensor timed out at frame {index} (simulated)")
        if fault.kind == "step":
            self.clock.step_wall(fault.amount)
        elif fault.kind == "stall":
            before = self.stalls_reported()
            self.clock.advance(fault.amount)  # nothing delivered for that long: only the supervisor can notice
            # on a real clock the supervisor's 1 s passes fall inside the stall; on this one it jumped at once, so
            # the camera stays silent until a pass has run (waiting on the agent's thread, not timing it)
            deadline = time.monotonic() + 15
            while self.stalls_reported() == before and time.monotonic() < deadline:
                time.sleep(0.05)
        elif fault.kind == "freeze":
            last = self._walk[(index - 1) % WALK_FRAMES]
            stamp = self.clock.monotonic()
            for _ in range(int(fault.amount * FPS)):  # the sensor repeats its last buffer, timestamp and all
                self.clock.advance(1 / FPS)
                yield Frame(stamp, index - 1, last.image, last.luma)


def quiet_plan(walks: int, faults: list[Fault], seed_offsets: list[int]) -> dict[int, Fault]:
    """One fault per walk, at a quiet moment of it (no figure in view, no alarm running)."""
    return {walk * WALK_FRAMES + offset: fault for walk, (fault, offset) in enumerate(zip(faults, seed_offsets,
                                                                                          strict=True))}


@dataclass
class LiveRun:
    camera: ScriptedCamera
    summary: RunSummary
    monitor: Monitor
    expected: list[dict]
    problems: list[str]
    lost: int
    duplicated: int
    events: list[dict] = field(default_factory=list)


def camera_events(agent: Agent, kind: str, reason: str) -> int:
    return sum(1 for e in list(agent.summary.events_published)
               if e.get("kind") == kind and e.get("source") == "camera" and e.get("reason") == reason)


def run_live(broker_url: str, tmp_path: Path, walks: int, plan: dict[int, Fault], events: dict | None = None,
             wall_start: float = 1_800_000_000.0) -> LiveRun:
    """The agent on the scripted camera (ManualClock) against a real broker; what a QoS 1 station received."""
    clock = ManualClock(wall_start=wall_start)
    camera = ScriptedCamera(clock, walks, plan)
    monitor = Monitor(broker_url, DEVICE, tmp_path / "received", printer=lambda line: None, session="station-l")
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, timeout=10)
    config = parse_config({"device_id": DEVICE, "data_dir": str(tmp_path / "data"),
                           "broker": {"url": broker_url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
                           "camera_watchdog": {"stall_after_s": 2.0, "restore_frames": 3}, **ALARM_SETTINGS,
                           "events": {**ALARM_SETTINGS["events"], **(events or {})}})
    agent = Agent(config, camera, clock, drain_timeout_s=60)
    camera.stalls_reported = lambda: camera_events(agent, "fault", "stalled")
    last = camera.frame_count_total - 1
    agent.on_frame = lambda frame: agent.stop() if frame.index >= last else None
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(summary=agent.run()), daemon=True)
    runner.start()
    runner.join(timeout=120 + walks * 10)  # the manual clock does not time the drain: a hang must fail, here
    assert not runner.is_alive(), "the agent did not finish (or did not drain its outbox to the broker)"
    summary = outcome["summary"]
    expected = list(summary.events_published)
    received_all(monitor, expected, timeout=30)
    problems, lost, duplicated = delivery_problems(monitor, expected)
    return LiveRun(camera, summary, monitor, expected, problems, lost, duplicated, list(monitor.events))
