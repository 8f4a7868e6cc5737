"""Both clip sinks through the ClipSink interface: software (real PyAV encode, decoded back) and the camera's
(a Pi 4 on the simulated picamera2, whose encoder is real H.264 too). Every frame carries its index in its
pixels, so the decoded clip says exactly which frames it holds."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import pytest

from agent.config import CameraSettings, RecorderSettings
from agent.storage.clip_sink import CameraClipSink, ClipSink, SoftwareClipSink, clip_sink
from common.clock import ManualClock
from drivers.camera.base import Frame, make_luma
from drivers.camera.picam import PiCamera, PiCameraSettings
from drivers.camera.synthetic import SyntheticCamera
from tests.fake_picamera2 import PI4, PI5, board_file, decoded_indexes, install, scene

SIZE = (320, 240)
PI_CAMERA = CameraSettings(backend="picamera2", width=SIZE[0], height=SIZE[1], detect_width=160, fps=10)


def indexed_frames() -> Iterator[Frame]:
    """Frames 0, 1, 2... at 10 fps, each showing its index (see tests/fake_picamera2.scene)."""
    index = 0
    while True:
        image = scene(index, SIZE)
        yield Frame(ts=index / 10, index=index, image=image, luma=make_luma(image, 160))
        index += 1


def record(sink: ClipSink, frames: Iterator[Frame], folder: Path, before: int = 30, during: int = 10):
    """Feed `before` frames, start the clip at the next one, feed the rest of `during`; the sink stays open."""
    for _ in range(before):
        sink.push(next(frames))
    assert not sink.recording
    sink.start(folder, next(frames), fps=10.0)
    assert sink.recording
    for _ in range(during - 1):
        sink.push(next(frames))


def test_software_sink_encodes_pre_roll_and_alarm_into_an_mp4(tmp_path):
    sink = SoftwareClipSink(RecorderSettings(pre_roll_s=1.0))
    record(sink, indexed_frames(), tmp_path)
    assert sink.buffered_bytes == 0, "the pre-roll went into the clip"
    clip = sink.finish()
    assert not sink.recording
    assert (clip.path, clip.name, clip.content_type) == (tmp_path / "clip.mp4", "clip.mp4", "video/mp4")
    assert clip.sha256 == hashlib.sha256(clip.path.read_bytes()).hexdigest()
    assert not list(tmp_path.glob("*.part"))
    # the last second before the alarm frame (30): frames 19..29 (ts 1.9..2.9), then 30..39
    assert decoded_indexes(clip.path, container_format=None) == list(range(19, 40))


def test_software_sink_holds_the_pre_roll_in_memory_until_a_clip_starts(tmp_path):
    sink = SoftwareClipSink(RecorderSettings(pre_roll_s=1.0))
    frames = indexed_frames()
    sink.push(next(frames))
    one = sink.buffered_bytes
    for _ in range(40):
        sink.push(next(frames))
    assert 0 < one < sink.buffered_bytes <= 12 * one * 1.5, "bounded by the 1 s window (11 frames)"
    assert not list(tmp_path.iterdir()), "nothing is written before an alarm"


def test_camera_sink_takes_the_clip_from_the_pi4_encoder(monkeypatch, tmp_path):
    install(monkeypatch)
    camera = PiCamera(PI_CAMERA, PiCameraSettings(preroll_s=1.0, iperiod=5), model_file=board_file(tmp_path, PI4))
    sink = CameraClipSink(camera.hardware_clips())
    with camera:
        record(sink, iter(camera.frames()), tmp_path)
        assert sink.buffered_bytes == 0
        clip = sink.finish()
    assert not sink.recording
    assert (clip.path, clip.content_type) == (tmp_path / "clip.mp4", "video/mp4")
    assert clip.sha256 == hashlib.sha256(clip.path.read_bytes()).hexdigest()
    assert not list(tmp_path.glob("*.part"))
    # one second before the alarm frame (30), from a key frame (every 5th), through frame 39
    assert decoded_indexes(clip.path) == list(range(20, 40))


def test_camera_sink_names_a_raw_h264_clip_by_its_format(monkeypatch, tmp_path):
    del install(monkeypatch).outputs.CircularOutput2    # an older picamera2: raw H.264 elementary stream
    camera = PiCamera(PI_CAMERA, PiCameraSettings(preroll_s=1.0, iperiod=5), model_file=board_file(tmp_path, PI4))
    sink = CameraClipSink(camera.hardware_clips())
    with camera:
        record(sink, iter(camera.frames()), tmp_path)
        clip = sink.finish()
    assert (clip.name, clip.content_type) == ("clip.h264", "video/h264")
    # 16 frames kept (1 s + one key-frame interval + 1); frame 31 pushes 15 out, so the clip starts at key frame 20
    assert decoded_indexes(clip.path) == list(range(20, 40))


@pytest.mark.parametrize("hardware", [False, True], ids=["software", "camera"])
def test_abandon_leaves_no_file_and_the_next_clip_still_works(monkeypatch, tmp_path, hardware):
    install(monkeypatch)
    camera = PiCamera(PI_CAMERA, PiCameraSettings(preroll_s=1.0, iperiod=5),
                      model_file=board_file(tmp_path, PI4 if hardware else PI5))
    sink = clip_sink(RecorderSettings(pre_roll_s=1.0), camera, allow_hardware=True)
    assert isinstance(sink, CameraClipSink if hardware else SoftwareClipSink)
    first, second = tmp_path / "ev1", tmp_path / "ev2"
    first.mkdir(), second.mkdir()
    with camera:
        frames = iter(camera.frames())
        record(sink, frames, first)
        sink.abandon()
        assert not sink.recording and not list(first.iterdir())
        sink.abandon()      # nothing being recorded: nothing to do
        record(sink, frames, second, before=10)
        clip = sink.finish()
    assert clip.path.parent == second and clip.size > 0


def test_the_sink_is_chosen_once_from_the_camera_and_the_privacy_masks(monkeypatch, tmp_path):
    install(monkeypatch)
    settings = RecorderSettings()
    pi4 = PiCamera(PI_CAMERA, model_file=board_file(tmp_path, PI4))
    assert isinstance(clip_sink(settings, pi4, allow_hardware=True), CameraClipSink)
    assert isinstance(clip_sink(settings, pi4, allow_hardware=False), SoftwareClipSink), "masks need software"
    forced_off = PiCamera(PI_CAMERA, PiCameraSettings(encoder="software"), model_file=board_file(tmp_path, PI4))
    assert isinstance(clip_sink(settings, forced_off, allow_hardware=True), SoftwareClipSink)
    assert isinstance(clip_sink(settings, SyntheticCamera(clock=ManualClock()), allow_hardware=True), SoftwareClipSink)
    assert isinstance(clip_sink(settings, None, allow_hardware=True), SoftwareClipSink)
