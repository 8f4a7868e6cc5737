"""Recorder: each alarm's clip (through its one ClipSink) and its JPEG snapshot, in media_dir/<event_id>/."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from agent.config import RecorderSettings
from agent.storage.clip_sink import clip_sink
from agent.storage.media import MediaFile, finalize
from common.errors import StorageError
from drivers.camera.base import Camera, Frame

SNAPSHOT_NAME = "snapshot.jpg"


def draw_boxes(image: np.ndarray, boxes, scale: float) -> np.ndarray:
    marked = image.copy()
    for box in boxes:
        x, y, w, h = box.scaled(scale)
        cv2.rectangle(marked, (x, y), (x + w, y + h), (0, 0, 255), max(1, int(round(2 * scale))))
    return marked


class Recorder:
    """Keeps the pre-roll and writes one clip (and snapshot) per alarm into media_dir/<event_id>/.

    The clip sink is chosen once, here: with a camera that keeps its own encoded pre-roll (a Pi 4's hardware
    encoder) the clip comes from the camera and no frame is re-encoded; otherwise frames are buffered as JPEG
    and encoded with PyAV. Privacy masks (allow_hardware False) need the software sink, since the hardware
    stream is encoded before the agent sees the pixels.
    """

    def __init__(self, settings: RecorderSettings, media_dir: Path, fps: float, camera: Camera | None = None,
                 allow_hardware: bool = True) -> None:
        self.settings = settings
        self.media_dir = media_dir
        self.fps = fps
        self.sink = clip_sink(settings, camera, allow_hardware)

    @property
    def recording(self) -> bool:
        return self.sink.recording

    @property
    def dropped_frames(self) -> int | None:
        """Frames left out of the current (or last) clip because the encoder was behind; None when the camera
        writes the clip."""
        return self.sink.dropped_frames

    def check(self) -> None:
        """At start-up: a wrong codec or preset is a ConfigError now, not at the first alarm. Only the software
        sink opens an encoder, so a unit on its camera's encoder never imports PyAV for it."""
        self.sink.check()

    def push(self, frame: Frame) -> None:
        self.sink.push(frame)

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
        self.sink.start(self._folder(event_id), frame, self.fps)

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
        if not self.sink.recording:
            raise StorageError("no clip is being recorded")
        return self.sink.finish()

    def abandon(self) -> None:
        """Drop the clip being recorded after a storage failure (its .part file is removed)."""
        self.sink.abandon()
