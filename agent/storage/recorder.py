"""Recorder: a time-based pre-roll ring of JPEG-encoded frames, and each alarm's H.264 MP4 clip and JPEG snapshot.

Files are written as `<name>.part`, flushed to disk and renamed, so a crash never leaves a file that looks complete.
"""

from __future__ import annotations

import collections
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from agent.config import RecorderSettings
from agent.storage.outbox import file_sha256
from common.errors import ConfigError, StorageError
from drivers.camera.base import Camera, Frame

log = logging.getLogger(__name__)

CLIP_NAME = "clip.mp4"
SNAPSHOT_NAME = "snapshot.jpg"
PTS_PER_SECOND = 1000


@dataclass(frozen=True, slots=True)
class MediaFile:
    name: str
    path: Path
    size: int
    sha256: str
    content_type: str

    def describe(self) -> dict:
        return {"name": self.name, "bytes": self.size, "sha256": self.sha256}


def finalize(part: Path, final: Path, content_type: str) -> MediaFile:
    """fsync a finished .part file, rename it into place and fingerprint it."""
    try:
        with part.open("rb") as stream:
            os.fsync(stream.fileno())
        os.replace(part, final)
        return MediaFile(final.name, final, final.stat().st_size, file_sha256(final), content_type)
    except OSError as exc:
        raise StorageError(f"cannot finish {final}: {exc.strerror or exc}") from None


class PreRollBuffer:
    """The last `seconds` of frames as JPEG bytes, so memory stays bounded whatever the resolution."""

    def __init__(self, seconds: float, jpeg_quality: int) -> None:
        self.seconds = seconds
        self._params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        self._frames: collections.deque[tuple[float, bytes]] = collections.deque()
        self.bytes = 0

    def push(self, ts: float, image: np.ndarray) -> None:
        if self.seconds <= 0:
            return
        ok, encoded = cv2.imencode(".jpg", image, self._params)
        if not ok:
            raise StorageError("JPEG encoding of a pre-roll frame failed")
        data = encoded.tobytes()
        self._frames.append((ts, data))
        self.bytes += len(data)
        while self._frames and self._frames[0][0] < ts - self.seconds:
            self.bytes -= len(self._frames.popleft()[1])

    def drain(self) -> Iterator[tuple[float, np.ndarray]]:
        """Hand over every buffered frame, oldest first, decoding one at a time so only one raw frame is alive."""
        while self._frames:
            ts, data = self._frames.popleft()
            self.bytes -= len(data)
            yield ts, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    def __len__(self) -> int:
        return len(self._frames)


def encoder_options(settings: RecorderSettings) -> dict[str, str]:
    """x264's quality and speed; zerolatency: no lookahead or B-frame queue, so memory stays flat and a clip
    closes promptly. Other encoders (a Pi 4's h264_v4l2m2m) take their defaults."""
    if settings.codec != "libx264":
        return {}
    return {"crf": str(settings.crf), "preset": settings.preset, "tune": "zerolatency"}


def check_encoder(settings: RecorderSettings) -> None:
    """Open the configured encoder once at start-up, so a wrong codec or preset is a config error then, not a
    crash at the first alarm (PyAV opens encoders lazily, at the first frame)."""
    import av

    try:
        context = av.CodecContext.create(settings.codec, "w")
        context.width, context.height, context.pix_fmt = 64, 64, "yuv420p"
        context.time_base = Fraction(1, PTS_PER_SECOND)
        context.options = encoder_options(settings)
        context.open()
    except (av.error.FFmpegError, ValueError) as exc:
        raise ConfigError(f"recorder.codec / recorder.preset: cannot open encoder {settings.codec!r} "
                          f"(preset {settings.preset!r}): {exc}") from None


class ClipWriter:
    """Encodes frames into an H.264 MP4 with PyAV; pts come from frame time, so gaps and jitter are kept honest."""

    def __init__(self, final_path: Path, settings: RecorderSettings, fps: float, width: int, height: int) -> None:
        import av

        self.final_path = final_path
        self.part_path = final_path.with_name(final_path.name + ".part")
        self._size = (width - width % 2, height - height % 2)
        self._first_ts: float | None = None
        self._last_pts = -1
        try:
            self._container = av.open(str(self.part_path), mode="w", format="mp4")
            self._stream = self._container.add_stream(settings.codec, rate=Fraction(round(fps * 1000), 1000))
        except (av.error.FFmpegError, ValueError) as exc:
            raise StorageError(f"cannot start clip {self.part_path} with codec {settings.codec}: {exc}") from None
        self._stream.width, self._stream.height = self._size
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = Fraction(1, PTS_PER_SECOND)
        self._stream.options = encoder_options(settings)

    def add(self, ts: float, image: np.ndarray) -> None:
        import av

        try:
            self._add(ts, image)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise StorageError(f"cannot write clip {self.part_path}: {exc}") from None

    def _add(self, ts: float, image: np.ndarray) -> None:
        import av

        if self._first_ts is None:
            self._first_ts = ts
        pts = int(round((ts - self._first_ts) * PTS_PER_SECOND))
        if pts <= self._last_pts:
            return  # a duplicate timestamp would make the muxer reject the stream
        width, height = self._size
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]), format="bgr24")
        frame.pts, frame.time_base = pts, Fraction(1, PTS_PER_SECOND)
        self._last_pts = pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> MediaFile:
        import av

        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            return finalize(self.part_path, self.final_path, "video/mp4")
        except (av.error.FFmpegError, OSError) as exc:
            raise StorageError(f"cannot finish clip {self.part_path}: {exc}") from None

    def abandon(self) -> None:
        """Give up on a clip that cannot be written: nothing half-written is left to be mistaken for a clip."""
        import av

        try:
            self._container.close()
        except (av.error.FFmpegError, OSError) as exc:
            log.warning("closing abandoned clip %s: %s", self.part_path, exc)
        self.part_path.unlink(missing_ok=True)


def draw_boxes(image: np.ndarray, boxes, scale: float) -> np.ndarray:
    marked = image.copy()
    for box in boxes:
        x, y, w, h = box.scaled(scale)
        cv2.rectangle(marked, (x, y), (x + w, y + h), (0, 0, 255), max(1, int(round(2 * scale))))
    return marked


CLIP_CONTENT_TYPES = {"mp4": "video/mp4", "h264": "video/h264"}


class Recorder:
    """Keeps the pre-roll and writes one clip (and snapshot) per alarm into media_dir/<event_id>/.

    With a camera that keeps its own encoded pre-roll (a Pi 4's hardware encoder) the clip comes from the camera
    and no frame is re-encoded here; otherwise frames are buffered as JPEG and encoded with PyAV. Privacy masks
    need the software path, since the hardware stream is encoded before the agent sees the pixels.
    """

    def __init__(self, settings: RecorderSettings, media_dir: Path, fps: float, camera: Camera | None = None,
                 allow_hardware: bool = True) -> None:
        self.settings = settings
        self.media_dir = media_dir
        self.fps = fps
        self.camera = camera
        self.allow_hardware = allow_hardware
        self.pre_roll = PreRollBuffer(settings.pre_roll_s, settings.buffer_jpeg_quality)
        self._writer: ClipWriter | None = None
        self._hardware_clip: tuple[Path, Path] | None = None  # (part, final) being written by the camera

    @property
    def uses_camera_clips(self) -> bool:
        return self.allow_hardware and self.camera is not None and self.camera.hardware_preroll

    @property
    def recording(self) -> bool:
        return self._writer is not None or self._hardware_clip is not None

    def push(self, frame: Frame) -> None:
        if self.uses_camera_clips:
            return  # the camera's encoder keeps the pre-roll and writes the clip
        if self._writer is not None:
            self._writer.add(frame.ts, frame.image)
        else:
            self.pre_roll.push(frame.ts, frame.image)

    def _folder(self, event_id: str) -> Path:
        folder = self.media_dir / event_id
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create media folder {folder}: {exc.strerror or exc}") from None
        return folder

    def snapshot(self, event_id: str, frame: Frame, boxes) -> MediaFile:
        """Write the alarm's snapshot: the triggering frame with the boxes drawn."""
        return self._write_snapshot(self._folder(event_id), frame, boxes)

    def start(self, event_id: str, frame: Frame) -> None:
        """Open the alarm's clip with the pre-roll and the triggering frame."""
        folder = self._folder(event_id)
        if self.uses_camera_clips:
            final = folder / f"clip.{self.camera.clip_format}"
            part = final.with_name(final.name + ".part")
            self.camera.start_clip(part)
            self._hardware_clip = (part, final)
            return
        height, width = frame.image.shape[:2]
        self._writer = ClipWriter(folder / CLIP_NAME, self.settings, self.fps, width, height)
        for ts, image in self.pre_roll.drain():
            self._writer.add(ts, image)
        self._writer.add(frame.ts, frame.image)

    def _write_snapshot(self, folder: Path, frame: Frame, boxes) -> MediaFile:
        scale = frame.image.shape[1] / frame.luma.shape[1]
        ok, encoded = cv2.imencode(".jpg", draw_boxes(frame.image, boxes, scale),
                                   [cv2.IMWRITE_JPEG_QUALITY, self.settings.snapshot_jpeg_quality])
        if not ok:
            raise StorageError(f"JPEG encoding of the snapshot for {folder.name} failed")
        part = folder / (SNAPSHOT_NAME + ".part")
        try:
            part.write_bytes(encoded.tobytes())
            return finalize(part, folder / SNAPSHOT_NAME, "image/jpeg")
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise StorageError(f"cannot write snapshot {part}: {exc.strerror or exc}") from None

    def finish(self) -> MediaFile:
        """Close the clip of the current alarm and return it, fingerprinted."""
        if self._hardware_clip is not None:
            (part, final), self._hardware_clip = self._hardware_clip, None
            self.camera.stop_clip()
            return finalize(part, final, CLIP_CONTENT_TYPES[self.camera.clip_format])
        if self._writer is None:
            raise StorageError("no clip is being recorded")
        writer, self._writer = self._writer, None
        try:
            return writer.close()
        except StorageError:
            writer.abandon()
            raise

    def abandon(self) -> None:
        """Drop the clip being recorded after a storage failure (its .part file is removed)."""
        if self._writer is not None:
            self._writer.abandon()
            self._writer = None
        if self._hardware_clip is not None:
            part, _ = self._hardware_clip
            self._hardware_clip = None
            self.camera.stop_clip()
            part.unlink(missing_ok=True)
