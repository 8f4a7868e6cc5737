"""Raspberry Pi camera through picamera2: a full-size main stream for recording, a small YUV420 lores stream for
detection.

On a Pi 4 (which has an H.264 block) the main stream can also feed the hardware encoder into a circular
buffer, so a clip with pre-roll is written without any CPU encoding (hardware_clips()). A Pi 5 has no H.264
encoder: frames go to the agent's software recorder instead.

picamera2 is imported only in open(), so this module loads (and its pure helpers are testable) anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Literal

import numpy as np
from pydantic import Field

from common.errors import HardwareError
from common.settings import Section
from drivers.camera.base import Camera, Frame, HardwareClips

MODEL_FILE = Path("/proc/device-tree/model")


class PiCameraSettings(Section):
    """Raspberry Pi camera options (config section [picamera2])."""

    camera_num: int = Field(0, ge=0, le=7, description="Which camera connector (Pi 5 / CM boards have two).")
    encoder: Literal["auto", "hardware", "software"] = Field(
        "auto", description="'hardware': Pi 4 H.264 encoder with a circular pre-roll buffer; 'software': the "
                            "agent's recorder encodes frames; 'auto': hardware when the board has it (not Pi 5).")
    bitrate: int = Field(4_000_000, ge=100_000, le=25_000_000, description="Hardware H.264 bitrate, bits/s.")
    iperiod: int = Field(10, ge=1, le=300,
                         description="Frames between hardware key frames; a clip starts at a key frame, so this "
                                     "bounds how much pre-roll can be lost.")
    preroll_s: float = Field(5.0, ge=0, le=60, description="Seconds of encoded video kept for hardware clips "
                                                           "(match recorder.pre_roll_s).")
    buffer_count: int = Field(6, ge=2, le=16, description="Frame buffers libcamera allocates per stream.")


def build_configuration(camera_settings, settings: PiCameraSettings) -> dict:
    """Keyword arguments for Picamera2.create_video_configuration(): main RGB888 at the recording size, lores
    YUV420 at the detection width (aspect kept, even sizes as the ISP requires), frame rate fixed."""
    width, height = camera_settings.width, camera_settings.height
    lores_w = min(width, camera_settings.detect_width) // 2 * 2
    lores_h = max(2, round(lores_w * height / width) // 2 * 2)
    frame_us = int(round(1_000_000 / camera_settings.fps))
    return {"main": {"size": (width, height), "format": "RGB888"},
            "lores": {"size": (lores_w, lores_h), "format": "YUV420"},
            "buffer_count": settings.buffer_count,
            "controls": {"FrameDurationLimits": (frame_us, frame_us)}}


def yuv420_luma(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The Y plane of a picamera2 YUV420 array: shape (height * 3 / 2, stride), rows padded to the stride.
    Returns a (height, width) copy, safe to keep after the request is released."""
    width, height = size
    if array.ndim != 2 or array.shape[0] < height * 3 // 2 or array.shape[1] < width:
        raise HardwareError(f"lores buffer of shape {array.shape} does not hold a {width}x{height} YUV420 image")
    return np.ascontiguousarray(array[:height, :width])


def frame_from_request(request, index: int, lores_size: tuple[int, int]) -> Frame:
    """A completed picamera2 request -> Frame, safe to keep after the request is released. picamera2's
    make_array already copies the buffer (make_buffer is np.array of the mapping), so the main image is that
    array as it is: copying it again cost 0.30 ms a frame at 720p and 0.68 ms at 1080p (issue 12); only a
    stride-padded array is made contiguous. 'RGB888' is stored B, G, R per pixel, i.e. OpenCV's BGR."""
    metadata = request.get_metadata()
    if "SensorTimestamp" not in metadata:
        raise HardwareError("picamera2 request has no SensorTimestamp in its metadata")
    image = np.ascontiguousarray(request.make_array("main"), dtype=np.uint8)
    luma = yuv420_luma(request.make_array("lores"), lores_size)
    return Frame(ts=metadata["SensorTimestamp"] / 1e9, index=index, image=image, luma=luma)


def board_model(model_file: Path = MODEL_FILE) -> str:
    """The board's model string, e.g. 'Raspberry Pi 4 Model B Rev 1.4'; '' when unknown."""
    try:
        return model_file.read_bytes().decode(errors="replace").rstrip("\x00\n ")
    except OSError:
        return ""


def use_hardware_encoder(choice: str, model: str) -> bool:
    """Decide hardware vs software encoding; HardwareError if hardware is forced on a board without it."""
    has_h264 = model.startswith("Raspberry Pi") and not model.startswith("Raspberry Pi 5")
    if choice == "hardware" and not has_h264:
        raise HardwareError(f"picamera2.encoder = 'hardware', but this board ({model or 'unknown model'}) has "
                            "no H.264 encoder; use 'software' or 'auto'")
    return choice == "hardware" or (choice == "auto" and has_h264)


def check_hardware_size(width: int, height: int) -> None:
    """The Pi 4 H.264 block encodes at most 1920x1080 (level 4.2); larger fails deep inside V4L2."""
    if width > 1920 or height > 1080:
        raise HardwareError(f"camera.width x camera.height = {width}x{height} is too large for the Pi 4 hardware "
                            "H.264 encoder (max 1920x1080); lower it or set picamera2.encoder = 'software'")


def _import_picamera2():
    try:
        import picamera2
    except ImportError as exc:
        raise HardwareError("camera.backend 'picamera2' needs the picamera2 library, which is not installed "
                            f"({exc}); on Raspberry Pi OS: sudo apt install python3-picamera2") from None
    return picamera2


class CircularClips:
    """The Pi 4 encoder's clips (HardwareClips): cut, with their pre-roll, from the circular output the camera
    records into while it is open. CircularOutput2 writes an MP4 through PyavOutput; the older CircularOutput
    writes raw H.264."""

    def __init__(self) -> None:
        self.output = None          # the circular buffer while the camera records (CircularOutput2 or CircularOutput)
        self._clip_open = False

    @property
    def clip_format(self) -> str:
        return "mp4" if self.output is None or hasattr(self.output, "open_output") else "h264"

    def start(self, path: str | Path) -> None:
        """Start writing a clip that begins preroll_s before now (from the first key frame in the buffer)."""
        if self.output is None:
            raise HardwareError("the hardware pre-roll is not running: the Raspberry Pi camera is not open")
        if self._clip_open:
            raise HardwareError("a hardware clip is already being written; stop() first")
        if hasattr(self.output, "open_output"):
            from picamera2.outputs import PyavOutput

            self.output.open_output(PyavOutput(str(path), format="mp4"))
        else:
            self.output.fileoutput = str(path)
            self.output.start()
        self._clip_open = True

    def stop(self) -> None:
        """Finish the clip being written (the circular buffer keeps filling for the next one)."""
        if not self._clip_open:
            return
        if hasattr(self.output, "close_output"):
            self.output.close_output()
        else:
            self.output.stop()
        self._clip_open = False


class PiCamera(Camera):
    """picamera2 backend: Frame.image from the main stream, Frame.luma from the lores stream's Y plane."""

    live = True

    def __init__(self, camera_settings, settings: PiCameraSettings | None = None, *,
                 model_file: Path = MODEL_FILE) -> None:
        self.camera_settings = camera_settings
        self.settings = settings or PiCameraSettings()
        self.fps = float(camera_settings.fps)
        self._model_file = Path(model_file)
        self._picam2 = None
        self._lores_size: tuple[int, int] | None = None
        self._clips = CircularClips()
        self._closed = True
        self.hardware_encoding = False

    # -- start-up ------------------------------------------------------------------------------------------
    def open(self) -> None:
        picamera2 = _import_picamera2()
        self.hardware_encoding = use_hardware_encoder(self.settings.encoder, board_model(self._model_file))
        if self.hardware_encoding:
            check_hardware_size(self.camera_settings.width, self.camera_settings.height)
        try:
            self._picam2 = picamera2.Picamera2(self.settings.camera_num)
            config = self._picam2.create_video_configuration(**build_configuration(self.camera_settings,
                                                                                   self.settings))
            self._picam2.configure(config)
            # Read back what was configured: picamera2/libcamera may align the requested sizes.
            self._lores_size = tuple(self._picam2.stream_configuration("lores")["size"])
            if self.hardware_encoding:
                self._start_hardware_preroll()
            else:
                self._picam2.start()
        except HardwareError:
            self.close()
            raise
        except Exception as exc:    # libcamera reports a missing/busy camera as RuntimeError, IndexError...
            self.close()
            raise HardwareError(f"cannot start Raspberry Pi camera {self.settings.camera_num}: {exc}") from None
        self._closed = False

    def _start_hardware_preroll(self) -> None:
        from picamera2 import outputs
        from picamera2.encoders import H264Encoder

        encoder = H264Encoder(bitrate=self.settings.bitrate, iperiod=self.settings.iperiod)
        # A clip must start at a key frame, so keep one key-frame interval more than the pre-roll: the oldest
        # key frame in the buffer is then at least preroll_s old.
        keep_frames = round(self.settings.preroll_s * self.fps) + self.settings.iperiod
        if hasattr(outputs, "CircularOutput2"):
            self._clips.output = outputs.CircularOutput2(buffer_duration_ms=round(keep_frames * 1000 / self.fps))
        else:   # older picamera2: counted in frames, and it drops one as the recording starts
            self._clips.output = outputs.CircularOutput(buffersize=keep_frames + 1)
        self._picam2.start_recording(encoder, self._clips.output)

    # -- frames --------------------------------------------------------------------------------------------
    def frames(self) -> Iterator[Frame]:
        if self._picam2 is None or self._closed:
            raise HardwareError("Raspberry Pi camera is not open")
        index = 0
        while not self._closed:
            try:
                request = self._picam2.capture_request()
            except Exception as exc:
                if self._closed:
                    return
                raise HardwareError(f"Raspberry Pi camera capture failed: {exc}") from None
            try:
                frame = frame_from_request(request, index, self._lores_size)
            finally:
                request.release()   # always hand the buffers back, or the camera stalls for lack of them
            yield frame
            del frame   # not held while the next frame is captured (see FrameLoop._stream)
            index += 1

    # -- hardware clips with pre-roll ----------------------------------------------------------------------
    def hardware_clips(self) -> HardwareClips | None:
        """The hardware encoder's clips when this camera encodes in hardware ('hardware', or 'auto' on a board
        with the H.264 block); decided by config and board, so known before open(). open() is what refuses
        'hardware' on a board without the encoder."""
        choice = self.settings.encoder
        hardware = choice == "hardware" or use_hardware_encoder(choice, board_model(self._model_file))
        return self._clips if hardware else None

    def close(self) -> None:
        self._closed = True
        picam2, self._picam2 = self._picam2, None
        if picam2 is None:
            return
        try:
            self._clips.stop()
            if self._clips.output is not None:
                picam2.stop_recording()
            else:
                picam2.stop()
        finally:
            self._clips.output = None
            picam2.close()
