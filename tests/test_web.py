"""The commissioning page's parts without a browser: the walk test's timeout, no work while nobody watches, zones
validated by the agent's own config and written atomically, the API closed without the password."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import cv2
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
    # the page's person markers start from the unit's image-wide line
    assert client.get("/api/zones").json() == {"zones": [], "person_height": {"far": 0.03, "near": 0.45}}


def _client(tmp_path, clock: ManualClock | None = None):
    from starlette.testclient import TestClient

    from web.server import build_app

    config = tmp_path / "unit.toml"
    config.write_text('device_id = "pid-web-01"\n', encoding="utf-8")
    live = LiveState(CommissioningSettings(), clock or ManualClock())
    return TestClient(build_app(live, config, "s3cret-pass", False))


def test_a_malformed_or_oversized_body_is_refused_with_its_reason_and_the_page_keeps_serving(tmp_path):
    from web.server import MAX_BODY_BYTES

    client = _client(tmp_path)
    for body, reason in ((b'{"password": "s3cr', "body is not JSON"), (b"\xff\xfe{}", "not valid UTF-8"),
                         (b"[" * 40 + b"]" * 40, "nested too deeply"), (b'["s3cret-pass"]', "not a JSON object"),
                         (b'{"password": "a", "password": "s3cret-pass"}', "duplicate key")):
        answer = client.post("/api/login", content=body)  # no login needed to reach this one
        assert answer.status_code == 400 and reason in answer.json()["error"], (body, answer.text)
    big = b'{"password": "' + b"x" * MAX_BODY_BYTES + b'"}'
    assert client.post("/api/login", content=big).status_code == 413
    streamed = client.post("/api/login", content=iter([big[:1000], big[1000:]]))  # no Content-Length: counted
    assert streamed.status_code == 413 and "at most" not in streamed.json()["error"]
    assert client.post("/api/login", json={"password": "s3cret-pass"}).status_code == 200  # still serving
    for path in ("/api/zones", "/api/walk"):
        answer = client.post(path, content=b'{"zones": [')
        assert answer.status_code == 400 and "body is not JSON" in answer.json()["error"]
    assert client.post("/api/walk", content=b"[true]").status_code == 400
    assert client.post("/api/walk", json={"on": True}).json()["active"] is True


def test_a_session_ends_after_twelve_hours_on_the_units_clock_and_at_most_sixteen_are_kept(tmp_path):
    from web.server import COOKIE, MAX_SESSIONS, SESSION_S

    clock = ManualClock()
    client = _client(tmp_path, clock)
    assert client.post("/api/login", json={"password": "s3cret-pass"}).status_code == 200
    clock.advance(SESSION_S - 1)
    assert client.get("/api/state").status_code == 200
    clock.advance(1)
    assert client.get("/api/state").status_code == 401  # the cookie is still sent; the server no longer takes it
    tokens = []
    for _ in range(MAX_SESSIONS + 1):
        answer = client.post("/api/login", json={"password": "s3cret-pass"})
        tokens.append(answer.cookies[COOKIE])
        clock.advance(60)
    answers = []
    for token in tokens:
        client.cookies.clear()
        client.cookies.set(COOKIE, token)
        answers.append(client.get("/api/state").status_code)
    assert answers == [401] + [200] * MAX_SESSIONS  # the oldest login was dropped for the seventeenth


def test_agent_config_does_not_pull_the_web_framework():
    code = "import sys, agent.config; sys.exit('starlette' in sys.modules or 'uvicorn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_strobe_blinks_once_and_only_the_strobe():
    from agent.signalling import Signaller, SignallingSettings
    from drivers.gpio import GpioSettings, SimulatedGpio

    gpio = SimulatedGpio(GpioSettings(outputs=[{"id": "strobe", "pin": 22, "kind": "strobe"},
                                               {"id": "siren", "pin": 23, "kind": "siren"}]))
    gpio.open()
    signaller = Signaller(SignallingSettings(mode="overt", siren=True, strobe_pattern_ms=(200, 300)), gpio,
                          ManualClock())
    signaller.alarm_started(9.0)  # an alarm raised before the walk began: one flash ends its pattern and siren
    signaller.blink(10.0)
    for step in range(1, 30):
        signaller.tick(10.0 + step * 0.1)
    assert [(round(ts, 3), out, on) for ts, out, on in gpio.history] == [
        (9.0, "strobe", True), (9.0, "siren", True), (10.0, "siren", False), (10.2, "strobe", False)]
    signaller.set_mode("covert")
    signaller.blink(20.0)
    assert not gpio.is_on("strobe")  # a covert unit lights nothing, walk test or not


def _replay_with_strobe_and_siren(tmp_path, walking: bool):
    """The demo's person walking past a unit with a strobe and a siren (overt, siren on): its GPIO history and
    the walk list."""
    from agent.config import parse_config
    from agent.pipeline import Agent
    from drivers.camera.replay import ReplayCamera
    from evaluation.demo import write_demo

    clip = tmp_path / "walk.mp4"
    if not clip.exists():
        write_demo(clip, seconds=14.0, width=320, height=180)
    config = parse_config({"data_dir": str(tmp_path / f"data-{walking}"),
                           "camera": {"backend": "replay", "source": str(clip)},
                           "recorder": {"post_roll_s": 1.0}, "signalling": {"mode": "overt", "siren": True},
                           "gpio": {"outputs": [{"id": "strobe", "pin": 22, "kind": "strobe"},
                                                {"id": "siren", "pin": 23, "kind": "siren"}]}})
    clock = ManualClock()
    agent = Agent(config, ReplayCamera(clip, clock=clock, realtime=False), clock, upload=False)
    live = LiveState(CommissioningSettings(), clock)
    live.attach(agent)
    if walking:
        live.walk.start()
    agent.run()
    return agent.gpio.history, live.walk.snapshot()["detections"]


def test_the_replayed_person_blinks_the_strobe_once_and_never_sounds_the_siren(tmp_path):
    history, lines = _replay_with_strobe_and_siren(tmp_path, walking=True)
    flashes = [ts for ts, out, on in history if out == "strobe" and on]
    offs = [ts for ts, out, on in history if out == "strobe" and not on]
    print(f"walk lines {[(line['class'], line['alarm']) for line in lines]}, outputs {history}")
    # the person and the alarm they raise come on one frame: one line each, one flash (500 ms, the pattern's
    # first on-segment) where the alarm alone would have flashed for 30 s; the siren not even for a frame
    assert [line["alarm"] for line in lines] == [False, True] and len(flashes) == 1
    assert 0.45 <= offs[0] - flashes[0] <= 0.65
    assert [entry for entry in history if entry.output_id == "siren" and entry.on] == []


def test_the_same_person_without_a_walk_test_sounds_the_siren_and_the_strobe_pattern(tmp_path):
    history, lines = _replay_with_strobe_and_siren(tmp_path, walking=False)
    sirens = [ts for ts, out, on in history if out == "siren" and on]
    flashes = [ts for ts, out, on in history if out == "strobe" and on]
    assert lines == [] and len(sirens) == 1  # on at the alarm's start, until siren_s or the clip's end
    assert len(flashes) > 1  # the 500/500 ms pattern, not one blink


def test_the_motion_mask_is_drawn_only_while_the_page_shows_it():
    clock = ManualClock()
    live = LiveState(CommissioningSettings(view_width=160), clock)
    analysis = _person()
    analysis.result.mask[20:50, 40:50] = 255  # the person's pixels
    live.watched()
    live.viewer(_frame(0), analysis)
    assert live._mask_png is None  # the picture is watched, the mask is not asked for: not encoded
    assert live.mask_png() is None
    clock.advance(1.0)
    live.viewer(_frame(1), analysis)
    png = cv2.imdecode(np.frombuffer(live.mask_png(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert png.shape == (90, 160, 4)  # the live picture's size (view_width 160)
    assert png[30, 45].tolist() == [48, 48, 255, 140] and png[5, 5, 3] == 0  # red where motion, clear elsewhere


def test_the_360_unit_shows_its_strip_with_bearings_sectors_and_boxes_in_the_zones_coordinates(tmp_path):
    """A fisheye replay: the live picture is the detection strip, the ruler puts each compass point and sector at
    its bearing, and the walking person's box lies at their bearing inside the zone drawn on that strip."""
    from agent.config import parse_config
    from agent.pipeline import Agent
    from drivers.camera.replay import ReplayCamera
    from tests.fisheye_walk import BEARING_DEG, write_fisheye_walk

    clip = write_fisheye_walk(tmp_path / "fisheye.mp4")
    sectors = [{"name": "gate", "start_deg": 60, "end_deg": 140}, {"name": "yard", "start_deg": 300, "end_deg": 30}]
    east = {"name": "east", "polygon": [[0.2, 0.0], [0.35, 0.0], [0.35, 1.0], [0.2, 1.0]]}  # shares of the strip
    config = parse_config({"data_dir": str(tmp_path / "data"), "camera": {"backend": "replay", "source": str(clip)},
                           "panorama": {"enabled": True, "sectors": sectors}, "detection": {"zones": [east]}})
    clock = ManualClock()
    agent = Agent(config, ReplayCamera(clip, clock=clock, realtime=True), clock, upload=False)
    live = LiveState(CommissioningSettings(view_width=640), clock)
    agent.viewers.append(lambda frame, analysis: live.watched())  # somebody watches all along
    live.attach(agent)
    shown: list[tuple[dict, bytes]] = []
    agent.viewers.append(lambda frame, analysis: shown.append((live.state()["view"], live.jpeg())))
    agent.run()

    view, jpeg = next((view, jpeg) for view, jpeg in shown if view["boxes"])
    picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    scale = view["scale"]
    period = 360 / (360 + 20)  # the strip's share for 360°: north's 20° are repeated past the seam
    assert picture.shape[1] == 640 and abs(picture.shape[1] / picture.shape[0] - scale["aspect"]) < 0.05
    labels = [tick["label"] for tick in scale["ticks"]]
    assert labels == ["N", "NE", "E", "SE", "S", "SW", "W", "NW", "N"]
    for tick, degrees in zip(scale["ticks"], range(0, 361, 45), strict=True):
        assert abs(tick["x"] - degrees / 360 * period) < 1.5 / 760, tick
    runs = [(run["name"], round(run["x0"] / period * 360), round(run["x1"] / period * 360)) for run in scale["sectors"]]
    assert runs == [("gate", 60, 140), ("yard", 0, 30), ("yard", 300, 380)]  # yard wraps north and the seam
    box = view["boxes"][0]
    assert box["zone"] == "east" and abs(box["bearing_deg"] - BEARING_DEG) < 3
    assert abs((box["x"] + box["w"] / 2) / period * 360 - BEARING_DEG) < 3
    # the person is drawn where the box says: the brightest pixels of the shown strip lie inside it
    rows, cols = np.nonzero(cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY) > 200)
    height, width = picture.shape[:2]
    assert box["x"] * width - 2 <= cols.mean() <= (box["x"] + box["w"]) * width + 2
    assert box["y"] * height - 2 <= rows.mean() <= (box["y"] + box["h"]) * height + 2


def test_a_zones_sensitivity_smallest_object_and_person_heights_are_saved_and_refused_by_key(tmp_path):
    config = tmp_path / "unit.toml"
    config.write_text('device_id = "pid-web-01"\n', encoding="utf-8")
    with pytest.raises(ZonesRefused) as refused:
        save_zones(config, [{"name": "yard", "polygon": SQUARE, "sensitivity": 9, "person_height_far": 0.3,
                             "person_height_near": 0.1, "min_area": 0}])
    assert [problem["field"] for problem in refused.value.problems] == [
        "detection.zones.0.sensitivity", "detection.zones.0.min_area", "detection.zones.0.person_height_near"]
    assert "cannot look smaller" in refused.value.problems[2]["message"]
    with pytest.raises(ZonesRefused) as refused:  # one height alone: the unit takes them together
        save_zones(config, [{"name": "yard", "polygon": SQUARE, "person_height_far": 0.05,
                             "person_height_near": None}])
    assert [problem["field"] for problem in refused.value.problems] == ["detection.zones.0.person_height_near"]
    saved = save_zones(config, [{"name": "yard", "polygon": SQUARE, "sensitivity": 1.5, "min_area": 0.002,
                                 "person_height_far": 0.05, "person_height_near": 0.3}])
    zone = tomllib.loads(config.read_text(encoding="utf-8"))["detection"]["zones"][0]
    assert (zone["sensitivity"], zone["min_area"], zone["person_height_far"], zone["person_height_near"]) == (
        1.5, 0.002, 0.05, 0.3)
    assert saved.detection.zones[0].person_height_near == 0.3


def test_the_ruler_of_four_joined_cameras_marks_each_compass_point_where_the_strip_looks_that_way():
    from models.bearing import angle_diff
    from models.panorama import PanoramaSettings, PanoramaView
    from web.panorama_view import COMPASS, PanoramaPicture

    cameras = [{"name": f"cam{i}", "yaw_deg": 90 * i, "hfov_deg": 90} for i in range(4)]
    view = PanoramaView(PanoramaSettings(enabled=True, kind="multi", cameras=cameras, strip_width=640))
    view.unwrap([np.full((120, 160), 100, np.uint8)] * 4)  # the analyzer's detection strip, built on its first frame
    live = PanoramaPicture(view, 640)
    picture = live.picture(np.full((240, 4 * 320, 3), 100, np.uint8))  # the frame: the cameras side by side
    width = view.panorama.strip_size[0]
    assert abs(picture.shape[1] - 640) <= 2 and live.scale()["aspect"] == pytest.approx(width / 120)
    ticks = live.scale()["ticks"]
    assert [tick["label"] for tick in ticks] == ["NW", "N", "NE", "E", "SE", "S", "SW", "W", "NW"]  # from 315°
    degrees = {label: value for value, label in COMPASS.items()}
    for tick in ticks:
        assert angle_diff(float(view.panorama.bearing_at(tick["x"] * width + 0.5)), degrees[tick["label"]]) < 1.0
