"""A simulated picamera2 package for tests (this machine has no Pi camera), and helpers to read what it wrote.

The simulator is shaped like the real API (Picamera2, encoders.H264Encoder, outputs.CircularOutput2 /
CircularOutput / PyavOutput) and behaves like the hardware where the backend depends on it: sizes are checked
as libcamera does, lores rows are padded to a 64-byte stride, request buffers are recycled on release, and the
"hardware" encoder produces real H.264 (libx264 through PyAV) with key frames every iperiod frames, so a
pre-roll clip written through it is decoded and checked frame by frame (each frame carries its index).
"""

from __future__ import annotations

import collections
import sys
import types
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

PI4 = "Raspberry Pi 4 Model B Rev 1.4"
PI5 = "Raspberry Pi 5 Model B Rev 1.0"


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
        """A fresh array, as picamera2's: CompletedRequest.make_buffer copies the mapped buffer (np.array), and
        make_array shapes that copy, so it stays valid after release."""
        if self.released:
            raise RuntimeError("buffer already released")
        array = np.array(self._arrays[name], copy=True)
        self._camera.handed_out.append(array)
        return array

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
        self.handed_out: collections.deque = collections.deque(maxlen=8)   # the last arrays make_array made
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


def install(monkeypatch) -> types.ModuleType:
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


def board_file(tmp_path: Path, model: str) -> Path:
    """A device-tree model file saying which board this is."""
    path = tmp_path / "model"
    path.write_bytes(model.encode() + b"\x00")     # device-tree strings end in NUL
    return path


def decoded_indexes(path: Path, container_format: str | None = "h264") -> list[int]:
    """The frame indexes written into a clip's pictures, in decode order."""
    with av.open(str(path), format=container_format) as container:
        return [index_of(frame.to_ndarray(format="bgr24")) for frame in container.decode(video=0)]
