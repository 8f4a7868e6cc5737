"""picamera2 backend against the simulated picamera2 package (tests/fake_picamera2.py; no Pi camera here)."""

from __future__ import annotations

import hashlib
import itertools
import sys

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from agent.config import CameraSettings
from common.errors import HardwareError
from drivers.camera.picam import (
    PiCamera,
    PiCameraSettings,
    board_model,
    build_configuration,
    use_hardware_encoder,
    yuv420_luma,
)
from tests.fake_picamera2 import (
    PI4,
    PI5,
    FakeCircularOutput,
    FakeCircularOutput2,
    FakePicamera2,
    board_file,
    decoded_indexes,
    index_of,
    install,
    padded_yuv420,
    scene,
)


@pytest.fixture
def fake_picamera2(monkeypatch):
    return install(monkeypatch)


CAMERA = CameraSettings(backend="picamera2", width=320, height=240, detect_width=160, fps=10)


# --- pure helpers --------------------------------------------------------------------------------------------

def test_configuration_asks_for_rgb_main_and_yuv420_lores_at_detection_size():
    config = build_configuration(CameraSettings(width=1280, height=720, detect_width=201, fps=12.5),
                                 PiCameraSettings(buffer_count=4))
    assert config == {"main": {"size": (1280, 720), "format": "RGB888"},
                      "lores": {"size": (200, 112), "format": "YUV420"},
                      "buffer_count": 4, "controls": {"FrameDurationLimits": (80000, 80000)}}
    tiny = build_configuration(CameraSettings(width=96, height=64, detect_width=320), PiCameraSettings())
    assert tiny["lores"]["size"] == (96, 64), "lores never exceeds main"


def test_yuv420_luma_is_the_y_plane_without_stride_padding():
    bgr = scene(7, (160, 120))
    array = padded_yuv420(bgr, stride=192)
    assert array.shape == (180, 192)
    luma = yuv420_luma(array, (160, 120))
    assert luma.shape == (120, 160) and luma.flags.c_contiguous
    expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)[:120]
    np.testing.assert_array_equal(luma, expected)
    array[...] = 0
    assert luma.any(), "the luma is a copy, not a view of the camera buffer"
    with pytest.raises(HardwareError, match=r"does not hold a 320x120 YUV420"):
        yuv420_luma(padded_yuv420(bgr, 192), (320, 120))


def test_board_decides_hardware_or_software_encoding(tmp_path):
    assert board_model(board_file(tmp_path, PI4)) == PI4
    assert board_model(tmp_path / "absent") == ""
    assert use_hardware_encoder("auto", PI4) and not use_hardware_encoder("auto", PI5)
    assert not use_hardware_encoder("auto", "") and not use_hardware_encoder("software", PI4)
    with pytest.raises(HardwareError, match="Raspberry Pi 5 .* has no H.264 encoder"):
        use_hardware_encoder("hardware", PI5)
    with pytest.raises(ValidationError):
        PiCameraSettings(encoder="gpu")


# --- the backend on the simulated camera ---------------------------------------------------------------------

def test_software_mode_frames_carry_main_image_lores_luma_and_sensor_time(fake_picamera2, tmp_path):
    camera = PiCamera(CAMERA, PiCameraSettings(), model_file=board_file(tmp_path, PI5))
    with camera:
        frames = list(itertools.islice(camera.frames(), 5))
        (device,) = FakePicamera2.instances
        assert device.started and device.encoders == [] and camera.hardware_clips() is None
        assert device.camera_config["lores"] == {"format": "YUV420", "size": (160, 120), "stride": 192}
        assert device.camera_config["controls"]["FrameDurationLimits"] == (100000, 100000)
    assert device.closed and not device.started and device.outstanding == 0, "every request was released"
    assert np.shares_memory(frames[-1].image, device.handed_out[-2]), "main: picamera2's own copy, not a second"
    for index, frame in enumerate(frames):
        assert frame.index == index
        np.testing.assert_array_equal(frame.image, scene(index, (320, 240)))   # intact after release
        assert frame.luma.shape == (120, 160)
        small = cv2.resize(scene(index, (320, 240)), (160, 120), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(frame.luma, cv2.cvtColor(small, cv2.COLOR_BGR2YUV_I420)[:120])
        assert index_of(cv2.resize(frame.luma, (320, 240))[..., None].repeat(3, axis=2)) == index
    assert [f.ts for f in frames] == pytest.approx([5.0, 5.1, 5.2, 5.3, 5.4])


def test_pi4_hardware_clip_starts_with_the_preroll(fake_picamera2, tmp_path):
    settings = PiCameraSettings(preroll_s=1.0, iperiod=5, bitrate=1_000_000)
    camera = PiCamera(CAMERA, settings, model_file=board_file(tmp_path, PI4))
    clip = tmp_path / "alarm.mp4"
    clips = camera.hardware_clips()
    assert clips is not None, "a Pi 4 says it has hardware clips before the camera is opened"
    with pytest.raises(HardwareError, match="not open"):
        clips.start(clip)
    with camera:
        (device,) = FakePicamera2.instances
        (encoder,) = device.encoders
        assert (encoder.bitrate, encoder.iperiod) == (1_000_000, 5)
        # One second of pre-roll plus one key-frame interval (5 frames at 10 fps).
        assert isinstance(encoder.output, FakeCircularOutput2) and encoder.output.buffer_duration_ms == 1500
        stream = camera.frames()
        for _ in range(30):                     # frames 0-29 before the alarm
            next(stream)
        assert clips.clip_format == "mp4"
        clips.start(clip)
        with pytest.raises(HardwareError, match="already being written"):
            clips.start(tmp_path / "other.mp4")
        for _ in range(10):                     # frames 30-39 during it
            next(stream)
        clips.stop()
        for _ in range(5):                      # after it: not in the clip
            next(stream)
    indexes = decoded_indexes(clip)
    # At least one second (10 frames) before the alarm, from a key frame (every 5th), through the last frame.
    assert indexes == list(range(15, 40))


def test_older_picamera2_uses_the_frame_counted_circular_output(fake_picamera2, tmp_path):
    del fake_picamera2.outputs.CircularOutput2
    camera = PiCamera(CAMERA, PiCameraSettings(preroll_s=1.0, iperiod=5), model_file=board_file(tmp_path, PI4))
    clip = tmp_path / "alarm.h264"
    with camera:
        (encoder,) = FakePicamera2.instances[0].encoders
        assert isinstance(encoder.output, FakeCircularOutput) and encoder.output.buffersize == 16
        stream = camera.frames()
        for _ in range(30):
            next(stream)
        clips = camera.hardware_clips()
        assert clips.clip_format == "h264"
        clips.start(clip)
        for _ in range(10):
            next(stream)
        clips.stop()
    assert decoded_indexes(clip) == list(range(15, 40))


def test_forcing_hardware_on_a_pi5_fails_at_open_before_taking_the_camera(fake_picamera2, tmp_path):
    camera = PiCamera(CAMERA, PiCameraSettings(encoder="hardware"), model_file=board_file(tmp_path, PI5))
    assert camera.hardware_clips() is not None, "asking is not where it fails: open() is (and is retried)"
    with pytest.raises(HardwareError, match="has no H.264 encoder"):
        camera.open()
    assert FakePicamera2.instances == []
    too_big = CameraSettings(backend="picamera2", width=2304, height=1296)
    with pytest.raises(HardwareError, match="2304x1296 is too large for the Pi 4 hardware H.264 encoder"):
        PiCamera(too_big, model_file=board_file(tmp_path, PI4)).open()


def test_missing_library_and_missing_camera_are_clear_hardware_errors(fake_picamera2, monkeypatch, tmp_path):
    FakePicamera2.sensors = 0
    with pytest.raises(HardwareError, match="cannot start Raspberry Pi camera 0: list index out of range"):
        PiCamera(CAMERA, model_file=board_file(tmp_path, PI4)).open()
    monkeypatch.setitem(sys.modules, "picamera2", None)     # what an absent package looks like to import
    with pytest.raises(HardwareError, match="picamera2 library, which is not installed.*python3-picamera2"):
        PiCamera(CAMERA).open()


def test_capture_failure_mid_stream_is_a_hardware_error(fake_picamera2, tmp_path):
    camera = PiCamera(CAMERA, model_file=board_file(tmp_path, PI5))
    camera.open()
    FakePicamera2.instances[0].fail_at = 3
    seen = []
    with pytest.raises(HardwareError, match="capture failed: Camera frontend has timed out"):
        for frame in camera.frames():
            seen.append(frame.index)
    assert seen == [0, 1, 2]
    camera.close()
    camera.close()
    assert FakePicamera2.instances[0].closed
    with pytest.raises(HardwareError, match="not open"):
        next(camera.frames())


def test_recorder_takes_the_pi4_hardware_clip_instead_of_encoding(fake_picamera2, tmp_path):
    from agent.config import RecorderSettings
    from agent.storage.clip_sink import CameraClipSink
    from agent.storage.recorder import Recorder

    camera = PiCamera(CAMERA, PiCameraSettings(preroll_s=1.0, iperiod=5), model_file=board_file(tmp_path, PI4))
    recorder = Recorder(RecorderSettings(pre_roll_s=1.0), tmp_path / "media", fps=10.0, camera=camera)
    with camera:
        assert isinstance(recorder.sink, CameraClipSink)
        frames = camera.frames()
        for _ in range(30):
            recorder.push(next(frames))
        assert recorder.sink.buffered_bytes == 0  # nothing buffered or re-encoded in software
        frame = next(frames)
        snapshot = recorder.snapshot("ev1", frame, [])
        recorder.start("ev1", frame)
        for _ in range(9):
            recorder.push(next(frames))
        clip = recorder.finish()
    assert snapshot.path.exists() and not list((tmp_path / "media").rglob("*.part"))
    assert clip.path.name == "clip.mp4" and clip.content_type == "video/mp4"
    assert clip.sha256 == hashlib.sha256(clip.path.read_bytes()).hexdigest()
    # the alarm frame is 30: one second (10 frames) before it, from a key frame (every 5th), through frame 39
    assert decoded_indexes(clip.path) == list(range(20, 40))


def test_privacy_masks_keep_the_software_recorder(fake_picamera2, tmp_path):
    from agent.config import RecorderSettings
    from agent.storage.clip_sink import SoftwareClipSink
    from agent.storage.recorder import Recorder

    camera = PiCamera(CAMERA, PiCameraSettings(), model_file=board_file(tmp_path, PI4))
    recorder = Recorder(RecorderSettings(), tmp_path / "media", fps=10.0, camera=camera, allow_hardware=False)
    with camera:
        assert camera.hardware_clips() is not None and isinstance(recorder.sink, SoftwareClipSink)
        recorder.push(next(camera.frames()))
        assert len(recorder.sink.pre_roll) == 1
