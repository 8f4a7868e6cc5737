"""The camera interface every backend implements, and the frame it yields."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from common.clock import Clock


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame.

    ts: seconds on the camera's own timeline (monotonic; for a replay, index / fps from 0).
    index: frame number from the start of the stream.
    image: full-size BGR uint8 image, the one that is recorded.
    luma: small single-channel uint8 image, the one detection works on.
    """

    ts: float
    index: int
    image: np.ndarray
    luma: np.ndarray


class Camera(abc.ABC):
    """A source of timestamped frames. Use as a context manager or call open()/close()."""

    #: nominal frames per second of the stream (used for pacing, clip timing and replay time)
    fps: float = 10.0
    #: total number of frames when known in advance (recordings), else None
    frame_count: int | None = None
    #: a live camera is retried when it fails or ends; a recording that ends or fails ends the run
    live: bool = False
    #: True when the camera keeps an encoded pre-roll itself and writes clips (a Pi 4's hardware encoder);
    #: such cameras implement start_clip(path) / stop_clip() and say their container in clip_format
    hardware_preroll: bool = False
    clip_format: str = "mp4"
    #: called with a message when a live camera hits a read error it recovers from by itself (reconnects)
    on_error: Callable[[str], object] | None = None

    @abc.abstractmethod
    def open(self) -> None:
        """Acquire the device or file; raise SourceError/HardwareError with a clear message."""

    @abc.abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames until the source ends (recordings) or close() is called (live)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the device or file. Safe to call twice."""

    def __enter__(self) -> "Camera":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pace(started: float, ts: float, clock: Clock) -> None:
    """Real-time playback: wait until a frame `ts` seconds into the stream is due (started = monotonic at 0)."""
    delay = started + ts - clock.monotonic()
    if delay > 0:
        clock.wait(delay)


def make_luma(image: np.ndarray, width: int) -> np.ndarray:
    """Downscale a BGR or grey image to a grey image `width` pixels wide (aspect kept), like a lores stream."""
    import cv2

    from models.scale import downscale

    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return downscale(grey, width)
