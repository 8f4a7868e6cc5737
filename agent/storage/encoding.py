"""Software H.264 with PyAV: the encoder's options, the start-up encoder check, and the MP4 clip writer."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np

from agent.config import RecorderSettings
from agent.storage.media import MediaFile, finalize
from common.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

PTS_PER_SECOND = 1000


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
