"""Camera-side behaviour of the whole agent: bearings on a fisheye, camera faults with retry, stalls."""

from __future__ import annotations

import json
import math
import time

import cv2
import numpy as np
import pytest

from agent.config import parse_config
from agent.pipeline import Agent
from common.clock import SystemClock
from common.errors import HardwareError
from drivers.camera.base import Camera, Frame, make_luma
from drivers.camera.replay import ReplayCamera

SIZE = 640


def fisheye_frame(background: np.ndarray, angle_deg: float | None, radius: float) -> np.ndarray:
    """An overhead fisheye view; a person-shaped ellipse, long axis radial, at a bearing from image-up."""
    image = background.copy()
    if angle_deg is not None:
        centre = SIZE / 2
        x = centre + radius * math.sin(math.radians(angle_deg))
        y = centre - radius * math.cos(math.radians(angle_deg))
        cv2.ellipse(image, (round(x), round(y)), (28, 12), angle_deg - 90, 0, 360, (235, 235, 235), -1)
    return image


def test_alarm_from_a_fisheye_carries_bearing_and_sector(tmp_path):
    rng = np.random.default_rng(3)
    grey = cv2.GaussianBlur(rng.integers(60, 140, (SIZE, SIZE), dtype=np.uint8), (9, 9), 0)
    background = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    frames = tmp_path / "frames"
    frames.mkdir()
    plan = [None] * 30 + list(range(14)) + [None] * 10  # settle, walk in at 140 degrees, leave
    for index, step in enumerate(plan):
        image = fisheye_frame(background, None if step is None else 140.0, 250 - 10 * (step or 0))
        cv2.imwrite(str(frames / f"f{index:03d}.png"), image)
    config = parse_config({
        "data_dir": str(tmp_path / "data"),
        "panorama": {"enabled": True, "sectors": [
            {"name": "north-east", "start_deg": 0, "end_deg": 90}, {"name": "south-east", "start_deg": 90,
                                                                     "end_deg": 180},
            {"name": "south-west", "start_deg": 180, "end_deg": 270}, {"name": "north-west", "start_deg": 270,
                                                                       "end_deg": 360}]},
        "recorder": {"post_roll_s": 0.5}, "events": {"event_gap_s": 0.3},
    })
    clock = SystemClock()
    summary = Agent(config, ReplayCamera(str(frames), clock=clock, fps=10.0), clock, upload=False).run()
    starts = [e for e in summary.events_published if e["kind"] == "intrusion" and e["phase"] == "start"]
    assert len(starts) == 1
    assert abs(starts[0]["bearings_deg"][0] - 140.0) <= 5.0
    assert starts[0]["sectors"] == ["south-east"]


class FlakySensorCamera(Camera):
    """A live camera simulator: renders frames in real time, and its sensor times out after `fail_after` frames
    on the first opening (as a loose ribbon cable does); reopening it works."""

    live = True

    def __init__(self, fail_after: int, fps: float = 20.0) -> None:
        self.fps, self.fail_after = fps, fail_after
        self.opened = 0
        self.ts = 0.0

    def open(self) -> None:
        self.opened += 1

    def frames(self):
        image = np.full((120, 160, 3), 90, np.uint8)
        for count in range(10_000):
            if self.opened == 1 and count == self.fail_after:
                raise HardwareError("camera sensor timed out (simulated ribbon fault)")
            time.sleep(1 / self.fps)
            self.ts += 1 / self.fps
            yield Frame(self.ts, round(self.ts * self.fps), image, make_luma(image, 160))

    def close(self) -> None:
        pass


def test_a_failing_live_camera_raises_fault_and_restore_and_the_agent_keeps_running(tmp_path):
    config = parse_config({"data_dir": str(tmp_path / "data"), "camera_watchdog": {"restore_frames": 3}})
    camera = FlakySensorCamera(fail_after=10)
    agent = Agent(config, camera, SystemClock(), upload=False)
    agent.on_frame = lambda frame: agent.stop() if agent.summary.frames >= 30 else None
    summary = agent.run()
    kinds = [(e["kind"], e.get("source"), e.get("reason")) for e in summary.events_published]
    assert kinds == [("fault", "camera", "error"), ("restore", "camera", "error")]
    assert "ribbon" in summary.events_published[0]["message"]
    assert camera.opened == 2 and summary.frames >= 30


class StallingCamera(Camera):
    """A live camera that freezes after 10 frames (delivering nothing) until `resume()` says so, then carries on.

    The freeze ends on a condition, not after a set time, so a loaded machine cannot turn it into a race."""

    live = True

    def __init__(self, resume, fps: float = 20.0, longest_s: float = 60.0) -> None:
        self.fps, self.resume, self.longest_s = fps, resume, longest_s

    def open(self) -> None:
        pass

    def frames(self):
        image = np.full((120, 160, 3), 90, np.uint8)
        for index in range(40):
            if index == 10:
                self._freeze()
            time.sleep(1 / self.fps)
            yield Frame(index / self.fps, index, image, make_luma(image, 160))

    def _freeze(self) -> None:
        deadline = time.monotonic() + self.longest_s
        while not self.resume():
            assert time.monotonic() < deadline, "the stall was never reported"
            time.sleep(0.05)

    def close(self) -> None:
        pass


def test_a_stalled_camera_is_reported_while_the_loop_is_blocked(tmp_path):
    config = parse_config({"data_dir": str(tmp_path / "data"),
                           "camera_watchdog": {"stall_after_s": 1.0, "restore_frames": 3},
                           "heartbeat": {"interval_s": 1}})
    agent = None

    def stall_reported() -> bool:  # the supervisor, beside the blocked loop, has said so in an event and a heartbeat
        if not any(e["kind"] == "fault" for e in agent.summary.events_published):
            return False
        beats = [json.loads(row.payload) for row in agent.outbox.pending(0, 1000) if row.topic == "heartbeat"]
        return any(beat["camera"]["state"] == "stalled" for beat in beats)

    agent = Agent(config, StallingCamera(resume=stall_reported), SystemClock(), upload=False)
    agent.on_frame = lambda frame: agent.stop() if frame.index >= 30 else None
    summary = agent.run()
    faults = [e for e in summary.events_published if e["kind"] in ("fault", "restore")]
    assert [(e["kind"], e["reason"]) for e in faults] == [("fault", "stalled"), ("restore", "stalled")]
    assert faults[1]["down_s"] > 0
    # heartbeats kept coming while the loop was blocked, and say what the camera was doing
    from agent.storage.outbox import Outbox

    outbox = Outbox(tmp_path / "data", 1 << 30, SystemClock())
    try:
        beats = [json.loads(row.payload) for row in outbox.pending(0, 1000) if row.topic == "heartbeat"]
    finally:
        outbox.close()
    assert beats, "no heartbeat was queued"
    first = beats[0]
    assert first["kind"] == "heartbeat" and first["device_id"] == "pid-demo-001" and first["armed"] is True
    assert set(first["camera"]) >= {"state", "fps", "frames", "faults"}
    assert first["signalling"] == {"mode": "covert", "active": False} and first["outbox_depth"] >= 0
    assert any(beat["camera"]["state"] == "stalled" for beat in beats)  # sent while the loop was blocked


def test_four_fixed_cameras_give_one_alarm_with_bearing_sector_and_a_side_by_side_clip(tmp_path):
    import av

    views = (("n", 0), ("e", 90), ("s", 180), ("w", 270))
    rng = np.random.default_rng(5)
    backgrounds = {name: cv2.GaussianBlur(rng.integers(60, 140, (240, 320), dtype=np.uint8), (9, 9), 0)
                   for name, _ in views}
    focal = 160 / math.tan(math.radians(45))
    px = round(160 + focal * math.tan(math.radians(20.0)))  # 20 degrees right of the south camera's axis
    for name, _ in views:
        folder = tmp_path / name
        folder.mkdir()
        for index in range(60):
            image = cv2.cvtColor(backgrounds[name], cv2.COLOR_GRAY2BGR)
            step = index - 30
            if name == "s" and 0 <= step < 14:  # walks down the south camera's picture at a fixed bearing
                cv2.ellipse(image, (px, 60 + 8 * step), (12, 40), 0, 0, 360, (235, 235, 235), -1)
            cv2.imwrite(str(folder / f"f{index:03d}.png"), image)
    config = parse_config({
        "data_dir": str(tmp_path / "data"),
        "camera": {"backend": "multi", "fps": 10, "detect_width": 320,
                   "sources": [{"name": name, "backend": "replay", "source": str(tmp_path / name)}
                               for name, _ in views]},
        "panorama": {"enabled": True, "kind": "multi", "strip_width": 960, "strip_height": 120,
                     "cameras": [{"name": name, "yaw_deg": yaw, "hfov_deg": 90} for name, yaw in views],
                     "sectors": [{"name": "back", "start_deg": 135, "end_deg": 225}]},
        "recorder": {"post_roll_s": 0.5}, "events": {"event_gap_s": 0.3},
    })
    from drivers.camera import open_camera

    clock = SystemClock()
    summary = Agent(config, open_camera(config, clock), clock, upload=False).run()
    starts = [e for e in summary.events_published if e["kind"] == "intrusion" and e["phase"] == "start"]
    assert len(starts) == 1
    start = starts[0]
    assert abs(start["bearings_deg"][0] - 200.0) <= 3.0 and start["sectors"] == ["back"]
    assert start["image_size"] == [4 * 320, 240]
    x, _, w, _ = start["boxes"][0]
    assert 2 * 320 <= x + w / 2 < 3 * 320  # drawn in the south camera's part of the picture
    clip = tmp_path / "data" / "media" / start["event_id"] / "clip.mp4"
    with av.open(str(clip)) as container:
        assert container.streams.video[0].codec_context.width == 4 * 320


def test_multi_camera_config_must_match_the_panorama():
    from common.errors import ConfigError

    with pytest.raises(ConfigError, match="panorama.cameras names"):
        parse_config({"camera": {"backend": "multi", "sources": [{"name": "a", "backend": "replay", "source": "x"},
                                                                 {"name": "b", "backend": "replay", "source": "y"}]},
                      "panorama": {"enabled": True, "kind": "multi",
                                   "cameras": [{"name": "a", "yaw_deg": 0, "hfov_deg": 90},
                                               {"name": "c", "yaw_deg": 180, "hfov_deg": 90}]}})
    with pytest.raises(ConfigError, match="needs \\[panorama\\] enabled"):
        parse_config({"camera": {"backend": "multi"}})
