"""The clip encoder's speed, threads and quality come from [recorder] (issue 12), and reach x264 itself: x264
writes the options it ran with into the stream (an SEI), which these tests read back from the MP4. The pre-roll
ring is bounded in bytes as well as seconds; a run sets OpenCV's thread count itself."""

from __future__ import annotations

import logging
import re

import cv2
import numpy as np
import pytest

from agent.config import RecorderSettings, parse_config
from agent.pipeline import OPENCV_THREADS, Agent
from agent.storage.clip_sink import PreRollBuffer, SoftwareClipSink
from common.clock import ManualClock
from common.errors import ConfigError
from drivers.camera.base import Frame
from drivers.camera.synthetic import SyntheticCamera

SIZE = (320, 240)


def frames(count: int):
    rng = np.random.default_rng(5)
    for index in range(count):
        image = rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
        yield Frame(ts=index / 10, index=index, image=image, luma=image[::4, ::4, 0].copy())


def x264_options(settings: RecorderSettings, tmp_path) -> dict[str, str]:
    """Record a short clip with `settings` and return the options x264 says it used."""
    tmp_path.mkdir(exist_ok=True)
    sink = SoftwareClipSink(settings)
    stream = frames(8)
    for _ in range(3):
        sink.push(next(stream))
    sink.start(tmp_path, next(stream), fps=10.0)
    for frame in stream:
        sink.push(frame)
    data = sink.finish().path.read_bytes()
    found = re.search(rb"options: ([^\x00]+)", data)
    assert found, "x264's options SEI not found in the clip"
    return dict(item.split("=", 1) for item in found.group(1).decode().split() if "=" in item)


def test_preset_threads_and_quality_reach_x264(tmp_path):
    fast = x264_options(RecorderSettings(pre_roll_s=1.0, preset="ultrafast", threads=1, qp=31), tmp_path / "a")
    assert (fast["threads"], fast["rc"], fast["qp"], fast["cabac"]) == ("1", "cqp", "31", "0")   # ultrafast: no CABAC
    slower = x264_options(RecorderSettings(pre_roll_s=1.0, preset="superfast", threads=2, rate_control="crf", crf=20),
                          tmp_path / "b")
    assert (slower["threads"], slower["rc"], slower["crf"], slower["cabac"]) == ("2", "crf", "20.0", "1")


def test_the_default_quality_is_one_constant_quantizer(tmp_path):
    """A constant quantizer by default: crf 26 spends most of its bits (and x264's CPU) keeping the sensor noise of
    a dark, static scene (README, Performance)."""
    used = x264_options(RecorderSettings(pre_roll_s=1.0), tmp_path)
    assert (used["rc"], used["qp"]) == ("cqp", str(RecorderSettings().qp))


def test_a_config_that_sets_crf_alone_keeps_crf(tmp_path):
    """A unit set up before rate_control existed says `crf = 26`: it keeps that rule, not the new default's."""
    old = parse_config({"data_dir": str(tmp_path), "recorder": {"crf": 22}}).recorder
    assert (old.rate_control, old.crf) == ("crf", 22)
    used = x264_options(old.model_copy(update={"pre_roll_s": 1.0}), tmp_path / "clip")
    assert (used["rc"], used["crf"]) == ("crf", "22.0")
    explicit = parse_config({"data_dir": str(tmp_path), "recorder": {"rate_control": "qp", "crf": 22}}).recorder
    assert explicit.rate_control == "qp"
    dumped = parse_config(parse_config({"data_dir": str(tmp_path)}).model_dump(mode="json", exclude_none=True))
    assert dumped.recorder.rate_control == "qp"   # a config written back whole (commissioning) keeps its rule
    with pytest.raises(ConfigError, match=r"recorder.*both qp and crf.*rate_control"):
        parse_config({"data_dir": str(tmp_path), "recorder": {"qp": 20, "crf": 22}})
    both = parse_config({"data_dir": str(tmp_path), "recorder": {"rate_control": "crf", "qp": 20, "crf": 22}})
    assert both.recorder.rate_control == "crf"   # said which: both values may stay in the file


@pytest.mark.parametrize(("key", "value"), [("preset", "fastest"), ("threads", -1), ("qp", 52),
                                            ("rate_control", "cbr"),
                                            ("pre_roll_max_bytes", -1), ("clip_queue_bytes", 1024)])
def test_bad_encoder_settings_are_refused_by_name(tmp_path, key, value):
    with pytest.raises(ConfigError, match=rf"recorder\.{key}"):
        parse_config({"data_dir": str(tmp_path), "recorder": {key: value}})


def test_the_pre_roll_ring_never_holds_more_than_its_bytes(caplog):
    ring = PreRollBuffer(seconds=10.0, jpeg_quality=85, max_bytes=200_000)
    with caplog.at_level(logging.WARNING):
        for frame in frames(40):          # 4 s of noise, far more than 200 kB of JPEG
            ring.push(frame.ts, frame.image)
            assert ring.bytes <= 200_000
    assert 0 < len(ring) < 40 and ring.capped == 40 - len(ring)
    assert caplog.text.count("pre-roll ring full") == 1, "one warning, not one per frame"
    newest = [ts for ts, _ in ring.take()]
    assert newest[-1] == pytest.approx(3.9) and newest == sorted(newest)   # the oldest went first


def test_the_clip_queue_comes_from_the_config():
    assert SoftwareClipSink(RecorderSettings(clip_queue_bytes=3 * 1024 * 1024)).queue_bytes == 3 * 1024 * 1024


def test_a_run_sets_opencvs_threads_deliberately(tmp_path):
    cv2.setNumThreads(4)
    config = parse_config({"data_dir": str(tmp_path / "data")})
    clock = ManualClock()
    camera = SyntheticCamera(clock=clock, width=160, height=120, fps=10.0, duration_s=0.5)
    Agent(config, camera, clock, upload=False).run()
    assert cv2.getNumThreads() == OPENCV_THREADS == 1
