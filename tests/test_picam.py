"""picamera2 backend against a simulated picamera2 package (this machine has no Pi camera).

The simulator is shaped like the real API (Picamera2, encoders.H264Encoder, outputs.CircularOutput2 /
CircularOutput / PyavOutput) and behaves like the hardware where the backend depends on it: sizes are checked
as libcamera does, lores rows are padded to a 64-byte stride, request buffers are recycled on release, and the
"hardware" encoder produces real H.264 (libx264 through PyAV) with key frames every iperiod frames, so the
pre-roll clip written by the backend is decoded and checked frame by frame.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import sys
import types
from fractions import Fraction
from pathlib import Path

import av
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

PI4 = "Raspberry Pi 4 Model B Rev 1.4"
PI5 = "Raspberry Pi 5 Model B Rev 1.0"


# --- the simulated picamera2 package ------------------------------------------------------------------------

def scene(index: int, size: tuple[int, int]) -> np.ndarray:
    """What the simulated sensor sees at frame `index` (BGR): a moving square, and the index written in binary
    as black/white blocks along the top (bold enough to survive lossy H.264)."""
    width, height = size
    image = np.full((height, width, 3), 90, np.uint8)
    image[height // 2 - 20: height // 2 + 20, (index * 6) % (width - 40): (index * 6) % (width - 40) + 40] = 250
    for bit in range(7):
        image[0:32, bit * 40: bit * 40 + 32] = 250 if index >> bit & 1 else 10
    return image


def index_of(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(7) if image[8:24, bit * 40 + 8: bit * 40 + 24].mean() > 128)


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def padded_yuv420(bgr: np.ndarray, stride: int) -> np.ndarray:
    """A YUV420 image laid out as libcamera delivers it: Y rows, then U and V planes, rows padded to stride."""
    height, width = bgr.shape[:2]
    planar = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).ravel()
    buffer = np.zeros(height * 3 // 2 * stride, np.uint8)
    buffer[: height * stride].reshape(height, stride)[:, :width] = planar[: width * height].reshape(height, width)
    chroma = (height // 2) * (width // 2)
    for plane in range(2):
        start = height * stride + plane * (height // 2) * (stride // 2)
        target = buffer[start: start + (height // 2) * (stride // 2)].reshape(height // 2, stride // 2)
        source = planar[width * height + plane * chroma: width * height + (plane + 1) * chroma]
        target[:, : width // 2] = source.reshape(height // 2, width // 2)
    return buffer.reshape(height * 3 // 2, stride)


class FakeRequest:
    def __init__(self, camera: "FakePicamera2", arrays: dict, metadata: dict) -> None:
        self._camera, self._arrays, self._metadata = camera, arrays, metadata
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        if self.released:
            raise RuntimeError("buffer already released")
        return self._arrays[name]

    def get_metadata(self) -> dict:
        return dict(self._metadata)

    def release(self) -> None:
        if self.released:
            raise RuntimeError("request released twice")
        self.released = True
        self._camera.outstanding -= 1
        for array in self._arrays.values():
            array[...] = 0          # the buffer goes back to the camera and is overwritten


class FakePicamera2:
    sensors = 1                 #: cameras "connected"; 0 simulates none
    instances: list = []

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num >= self.sensors:
            raise IndexError("list index out of range")     # what picamera2 raises for a missing camera
        self.camera_config = None
        self.started = False
        self.closed = False
        self.encoders: list = []
        self.index = 0
        self.outstanding = 0
        self.fail_at: int | None = None
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main=None, lores=None, raw=None, transform=None, colour_space=None,
                                   buffer_count=6, controls=None, display="main", encode="main", queue=True,
                                   sensor=None, use_case="video"):
        return {"use_case": use_case, "buffer_count": buffer_count, "display": display, "encode": encode,
                "main": {"format": "XBGR8888", "size": (1280, 720), **(main or {})},
                "lores": None if lores is None else {"format": "YUV420", "size": (640, 480), **lores},
                "raw": raw, "controls": {"NoiseReductionMode": 1, **(controls or {})}, "queue": queue}

    def configure(self, config: dict) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        main, lores = config["main"], config["lores"]
        if lores is not None:
            if lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if lores["format"] not in ("YUV420", "YVU420", "NV12", "NV21"):
                raise RuntimeError("lores stream must be YUV")
            lores["stride"] = _align(lores["size"][0], 64)
        main["stride"] = main["size"][0] * 3
        self.camera_config = config

    def stream_configuration(self, name: str = "main") -> dict:
        return self.camera_config[name]

    def start(self) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def start_encoder(self, encoder, output, pts=None, quality=None, name=None) -> None:
        encoder.width, encoder.height = self.camera_config["main"]["size"]
        frame_us = self.camera_config["controls"].get("FrameDurationLimits", (33333, 33333))[0]
        encoder.framerate = encoder.framerate or 1_000_000 / frame_us
        encoder.output = output
        encoder.start()
        self.encoders.append(encoder)

    def start_recording(self, encoder, output, pts=None, config=None, quality=None, name=None) -> None:
        if self.camera_config is None and config is None:
            config = self.create_video_configuration()
        if config is not None:
            self.configure(config)
        self.start_encoder(encoder, output, pts=pts, quality=quality, name=name)
        self.start()

    def stop(self) -> None:
        self.started = False

    def stop_recording(self) -> None:
        self.stop()
        for encoder in self.encoders:
            encoder.stop()
        self.encoders = []

    def close(self) -> None:
        self.closed = True

    def capture_request(self) -> FakeRequest:
        if not self.started:
            raise RuntimeError("Camera is not running")
        if self.fail_at is not None and self.index >= self.fail_at:
            raise RuntimeError("Camera frontend has timed out!")
        main_cfg, lores_cfg = self.camera_config["main"], self.camera_config["lores"]
        frame_us = self.camera_config["controls"].get("FrameDurationLimits", (33333, 33333))[0]
        image = scene(self.index, main_cfg["size"])
        small = cv2.resize(image, lores_cfg["size"], interpolation=cv2.INTER_AREA)
        timestamp_ns = 5_000_000_000 + self.index * frame_us * 1000
        for encoder in self.encoders:
            encoder.encode(image, timestamp_ns // 1000)
        self.index += 1
        self.outstanding += 1
        return FakeRequest(self, {"main": image, "lores": padded_yuv420(small, lores_cfg["stride"])},
                           {"SensorTimestamp": timestamp_ns, "FrameDuration": frame_us, "ExposureTime": 9000})


class FakeH264Encoder:
    """Stands in for the Pi 4's H.264 block: real H.264 from libx264, a key frame every iperiod frames."""

    def __init__(self, bitrate=None, repeat=True, iperiod=None, framerate=None, enable_sps_framerate=False,
                 qp=None, profile=None) -> None:
        self.bitrate, self.iperiod, self.framerate = bitrate, iperiod, framerate
        self.output = None
        self.width = self.height = None
        self._codec = None

    def start(self) -> None:
        self._codec = av.CodecContext.create("libx264", "w")
        self._codec.width, self._codec.height = self.width, self.height
        self._codec.pix_fmt = "yuv420p"
        self._codec.bit_rate = self.bitrate or 4_000_000
        self._codec.time_base = Fraction(1, 1_000_000)     # pts in sensor microseconds, as picamera2 passes
        self._codec.framerate = Fraction(self.framerate or 30).limit_denominator(1000)
        # zerolatency: one packet out per frame in, as a hardware encoder does; keyint fixes the I-period.
        self._codec.options = {"preset": "ultrafast", "tune": "zerolatency",
                               "x264-params": f"keyint={self.iperiod or 30}:min-keyint={self.iperiod or 30}:scenecut=0"}
        self.output.start()

    def encode(self, bgr: np.ndarray, timestamp_us: int) -> None:
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p")
        frame.pts = timestamp_us
        for packet in self._codec.encode(frame):
            self.output.outputframe(bytes(packet), packet.is_keyframe, timestamp_us)

    def stop(self) -> None:
        self.output.stop()


class FakePyavOutput:
    """Writes the encoded stream to a file (raw H.264 here; the real one muxes into the named container)."""

    def __init__(self, output_name, format=None, pts=None) -> None:
        self.output_name = output_name
        self._file = None

    def start(self) -> None:
        self._file = open(self.output_name, "wb")

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False) -> None:
        self._file.write(frame)

    def stop(self) -> None:
        self._file.close()


class FakeCircularOutput2:
    """Keeps buffer_duration_ms of encoded frames; an opened output gets them from the oldest key frame on."""

    def __init__(self, pts=None, buffer_duration_ms=5000) -> None:
        self.buffer_duration_ms = buffer_duration_ms
        self.recording = False
        self._ring: collections.deque = collections.deque()
        self._output = None
        self._need_key = True

    def start(self) -> None:
        if self.recording:
            raise RuntimeError("Circular output is running")
        self.recording = True

    def stop(self) -> None:
        self.recording = False
        if self._output is not None:
            self._drain()
            self._output.stop()
            self._output = None

    def open_output(self, output) -> None:
        if self._output is not None:
            raise RuntimeError("Underlying output must be closed first")
        output.start()
        self._output, self._need_key = output, True

    def close_output(self) -> None:
        if self._output is None:
            raise RuntimeError("No underlying output has been opened")
        self._output.stop()
        self._output = None

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False) -> None:
        if not self.recording:
            return
        self._ring.append((frame, keyframe, timestamp))
        while timestamp - self._ring[0][2] > self.buffer_duration_ms * 1000:
            self._ring.popleft()
        if self._output is not None:
            self._drain()

    def _drain(self) -> None:
        while self._ring:
            frame, keyframe, timestamp = self._ring.popleft()
            if self._need_key and not keyframe:
                continue
            self._need_key = False
            self._output.outputframe(frame, keyframe, timestamp)


class FakeCircularOutput:
    """The older frame-counted buffer: writes raw H.264 to `fileoutput` once started, lagging by the buffer."""

    def __init__(self, file=None, pts=None, buffersize=150) -> None:
        self.buffersize = buffersize
        self._ring: collections.deque = collections.deque(maxlen=buffersize)
        self._file = None
        self.recording = False
        self._first = True

    @property
    def fileoutput(self):
        return self._file

    @fileoutput.setter
    def fileoutput(self, name) -> None:
        self._file = open(name, "wb") if name else None

    def start(self) -> None:
        self.recording, self._first = True, True

    def outputframe(self, frame, keyframe=True, timestamp=None) -> None:
        self._ring.append((frame, keyframe))
        if self._file is None or not self.recording:
            return
        if self._first:
            while self._ring and not self._ring[0][1]:
                self._ring.popleft()
            if not self._ring:
                return
            self._first = False
        self._file.write(self._ring.popleft()[0])

    def stop(self) -> None:
        self.recording = False
        while self._ring and self._file is not None:
            self._file.write(self._ring.popleft()[0])
        if self._file is not None:
            self._file.close()
            self._file = None


@pytest.fixture
def fake_picamera2(monkeypatch):
    """Install the simulated picamera2 package; returns it so a test can reshape it (e.g. an older version)."""
    package = types.ModuleType("picamera2")
    encoders = types.ModuleType("picamera2.encoders")
    outputs = types.ModuleType("picamera2.outputs")
    package.Picamera2, package.encoders, package.outputs = FakePicamera2, encoders, outputs
    encoders.H264Encoder = FakeH264Encoder
    outputs.CircularOutput2, outputs.CircularOutput, outputs.PyavOutput = (FakeCircularOutput2, FakeCircularOutput,
                                                                          FakePyavOutput)
    for name, module in (("picamera2", package), ("picamera2.encoders", encoders), ("picamera2.outputs", outputs)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(FakePicamera2, "instances", [])
    monkeypatch.setattr(FakePicamera2, "sensors", 1)
    return package


def _board(tmp_path: Path, model: str) -> Path:
    path = tmp_path / "model"
    path.write_bytes(model.encode() + b"\x00")     # device-tree strings end in NUL
    return path


CAMERA = CameraSettings(backend="picamera2", width=320, height=240, detect_width=160, fps=10)


def _decoded_indexes(path: Path) -> list[int]:
    with av.open(str(path), format="h264") as container:
        return [index_of(frame.to_ndarray(format="bgr24")) for frame in container.decode(video=0)]


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
    assert board_model(_board(tmp_path, PI4)) == PI4
    assert board_model(tmp_path / "absent") == ""
    assert use_hardware_encoder("auto", PI4) and not use_hardware_encoder("auto", PI5)
    assert not use_hardware_encoder("auto", "") and not use_hardware_encoder("software", PI4)
    with pytest.raises(HardwareError, match="Raspberry Pi 5 .* has no H.264 encoder"):
        use_hardware_encoder("hardware", PI5)
    with pytest.raises(ValidationError):
        PiCameraSettings(encoder="gpu")


# --- the backend on the simulated camera ---------------------------------------------------------------------

def test_software_mode_frames_carry_main_image_lores_luma_and_sensor_time(fake_picamera2, tmp_path):
    camera = PiCamera(CAMERA, PiCameraSettings(), model_file=_board(tmp_path, PI5))
    with camera:
        frames = list(itertools.islice(camera.frames(), 5))
        (device,) = FakePicamera2.instances
        assert device.started and device.encoders == [] and camera.hardware_clips() is None
        assert device.camera_config["lores"] == {"format": "YUV420", "size": (160, 120), "stride": 192}
        assert device.camera_config["controls"]["FrameDurationLimits"] == (100000, 100000)
    assert device.closed and not device.started and device.outstanding == 0, "every request was released"
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
    camera = PiCamera(CAMERA, settings, model_file=_board(tmp_path, PI4))
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
    indexes = _decoded_indexes(clip)
    # At least one second (10 frames) before the alarm, from a key frame (every 5th), through the last frame.
    assert indexes == list(range(15, 40))


def test_older_picamera2_uses_the_frame_counted_circular_output(fake_picamera2, tmp_path):
    del fake_picamera2.outputs.CircularOutput2
    camera = PiCamera(CAMERA, PiCameraSettings(preroll_s=1.0, iperiod=5), model_file=_board(tmp_path, PI4))
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
    assert _decoded_indexes(clip) == list(range(15, 40))


def test_forcing_hardware_on_a_pi5_fails_at_open_before_taking_the_camera(fake_picamera2, tmp_path):
    camera = PiCamera(CAMERA, PiCameraSettings(encoder="hardware"), model_file=_board(tmp_path, PI5))
    assert camera.hardware_clips() is not None, "asking is not where it fails: open() is (and is retried)"
    with pytest.raises(HardwareError, match="has no H.264 encoder"):
        camera.open()
    assert FakePicamera2.instances == []
    too_big = CameraSettings(backend="picamera2", width=2304, height=1296)
    with pytest.raises(HardwareError, match="2304x1296 is too large for the Pi 4 hardware H.264 encoder"):
        PiCamera(too_big, model_file=_board(tmp_path, PI4)).open()


def test_missing_library_and_missing_camera_are_clear_hardware_errors(fake_picamera2, monkeypatch, tmp_path):
    FakePicamera2.sensors = 0
    with pytest.raises(HardwareError, match="cannot start Raspberry Pi camera 0: list index out of range"):
        PiCamera(CAMERA, model_file=_board(tmp_path, PI4)).open()
    monkeypatch.setitem(sys.modules, "picamera2", None)     # what an absent package looks like to import
    with pytest.raises(HardwareError, match="picamera2 library, which is not installed.*python3-picamera2"):
        PiCamera(CAMERA).open()


def test_capture_failure_mid_stream_is_a_hardware_error(fake_picamera2, tmp_path):
    camera = PiCamera(CAMERA, model_file=_board(tmp_path, PI5))
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

    camera = PiCamera(CAMERA, PiCameraSettings(preroll_s=1.0, iperiod=5), model_file=_board(tmp_path, PI4))
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
    assert _decoded_indexes(clip.path) == list(range(20, 40))


def test_privacy_masks_keep_the_software_recorder(fake_picamera2, tmp_path):
    from agent.config import RecorderSettings
    from agent.storage.clip_sink import SoftwareClipSink
    from agent.storage.recorder import Recorder

    camera = PiCamera(CAMERA, PiCameraSettings(), model_file=_board(tmp_path, PI4))
    recorder = Recorder(RecorderSettings(), tmp_path / "media", fps=10.0, camera=camera, allow_hardware=False)
    with camera:
        assert camera.hardware_clips() is not None and isinstance(recorder.sink, SoftwareClipSink)
        recorder.push(next(camera.frames()))
        assert len(recorder.sink.pre_roll) == 1
