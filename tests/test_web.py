"""The commissioning page's parts without a browser: the walk test's timeout, no work while nobody watches, zones
validated by the agent's own config and written atomically, the API closed without the password."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import numpy as np
import pytest

from agent.analyzer import Analysis
from common.clock import ManualClock
from drivers.camera.base import Frame
from models.motion import Box, MotionResult
from web.live import LiveState
from web.settings import CommissioningSettings
from web.walk import WalkTest
from web.zones import ZonesRefused, save_zones

SQUARE = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]


def _frame(index: int) -> Frame:
    return Frame(ts=index / 10, index=index, image=np.full((180, 320, 3), 90, np.uint8),
                 luma=np.full((90, 160), 90, np.uint8))


def _person(zone: str = "yard") -> Analysis:
    box = Box(x=40, y=20, w=10, h=30, area=300, zone=zone, label="person")
    result = MotionResult(True, 0.02, (box,), np.zeros((90, 160), np.uint8), 0.02, False, None, zone)
    return Analysis(result, [])


def test_walk_test_ends_by_itself_and_lists_each_object_once():
    clock = ManualClock()
    walk = WalkTest(clock, minutes=30)
    walk.add("yard", "person")
    assert walk.snapshot()["detections"] == []  # off: nothing is listed
    walk.start()
    for _ in range(20):  # one person seen on 20 frames in 2 s is one line
        walk.add("yard", "person", 12.5)
        clock.advance(0.1)
    walk.add("drive", "vehicle")
    lines = walk.snapshot()["detections"]
    assert [(line["zone"], line["class"], line["bearing_deg"]) for line in lines] == [
        ("yard", "person", 12.5), ("drive", "vehicle", None)]
    clock.advance(30 * 60 - 3)
    assert walk.active()
    clock.advance(3)
    assert not walk.active() and walk.snapshot()["seconds_left"] == 0


def test_no_picture_work_while_nobody_watches_and_a_few_fps_when_somebody_does():
    clock = ManualClock()
    live = LiveState(CommissioningSettings(view_fps=2.0), clock)
    for index in range(50):
        live.viewer(_frame(index), _person())
        clock.advance(0.1)
    assert live._jpeg is None  # nobody asked: no JPEG was encoded
    live.watched()
    encoded = []
    for index in range(50, 70):  # 2 s at 10 fps
        live.viewer(_frame(index), _person())
        if live._view["frame"] not in encoded:
            encoded.append(live._view["frame"])
        clock.advance(0.1)
    assert len(encoded) == 4  # 2 fps over 2 s
    state = live.state()
    assert state["view"]["boxes"] == [{"x": 0.25, "y": 20 / 90, "w": 10 / 160, "h": 30 / 90, "zone": "yard",
                                       "class": "person"}]
    assert live.jpeg()[:2] == b"\xff\xd8"


def test_walk_test_hears_detections_even_when_the_picture_is_not_watched():
    clock = ManualClock()
    live = LiveState(CommissioningSettings(), clock)
    live.walk.start()
    live.viewer(_frame(0), _person("gate"))
    assert [line["zone"] for line in live.state()["walk"]["detections"]] == ["gate"]
    assert live.walk_test_active()


def test_zones_are_validated_by_the_agent_config_and_written_atomically(tmp_path):
    config = tmp_path / "unit.toml"
    original = 'device_id = "pid-web-01"\n[events]\narmed = false\n'
    config.write_text(original, encoding="utf-8")
    with pytest.raises(ZonesRefused) as refused:
        save_zones(config, [{"name": "yard", "polygon": SQUARE}, {"name": "yard", "polygon": SQUARE}])
    assert "zone names must be unique" in refused.value.problems[0]["message"]
    with pytest.raises(ZonesRefused) as refused:
        save_zones(config, [{"name": "yard", "polygon": [[0.1, 0.1], [1.5, 0.1], [0.5, 0.9]]}])
    assert refused.value.problems[0]["field"] == "detection.zones.0.polygon"
    assert "outside 0..1" in refused.value.problems[0]["message"]
    assert config.read_text(encoding="utf-8") == original  # refused: untouched
    saved = save_zones(config, [{"name": "yard", "kind": "detect", "polygon": SQUARE, "min_area": None},
                                {"name": "window", "kind": "privacy", "polygon": SQUARE[:3]}])
    assert [zone.name for zone in saved.detection.zones] == ["yard", "window"]
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    assert data["events"] == {"armed": False} and data["device_id"] == "pid-web-01"  # the rest is kept
    assert [zone["kind"] for zone in data["detection"]["zones"]] == ["detect", "privacy"]
    assert list(tmp_path.iterdir()) == [config]  # no temporary file left behind


def test_the_api_is_closed_without_the_password(tmp_path):
    from starlette.testclient import TestClient

    from web.server import build_app

    config = tmp_path / "unit.toml"
    config.write_text('device_id = "pid-web-01"\n', encoding="utf-8")
    client = TestClient(build_app(LiveState(CommissioningSettings(), ManualClock()), config, "s3cret-pass", False))
    for path in ("/api/state", "/api/frame.jpg", "/api/zones"):
        assert client.get(path).status_code == 401
    assert client.post("/api/zones", json={"zones": []}).status_code == 401
    assert client.post("/api/walk", json={"on": True}).status_code == 401
    assert client.get("/").status_code == 200  # the page itself is public; it holds no secret
    assert client.post("/api/login", json={"password": "s3cret-pass"}).status_code == 200
    assert client.get("/api/zones").json() == {"zones": []}


def test_agent_config_does_not_pull_the_web_framework():
    code = "import sys, agent.config; sys.exit('starlette' in sys.modules or 'uvicorn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
