"""The camera interface every backend implements, and the frame it yields."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

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


class HardwareClips(Protocol):
    """Clips written by a camera's own encoder (as picamera2's circular outputs do): it keeps the last seconds
    encoded and a clip starts from the oldest key frame among them, so no frame is re-encoded on the CPU."""

    @property
    def clip_format(self) -> str:
        """The container written: 'mp4', or 'h264' for a raw elementary stream."""
        ...

    def start(self, path: Path) -> None:
        """Start writing a clip to `path`, beginning with the encoded pre-roll; HardwareError if it cannot."""
        ...

    def stop(self) -> None:
        """Finish the clip being written (nothing to do when none is)."""
        ...


class Camera(abc.ABC):
    """A source of timestamped frames. Use as a context manager or call open()/close()."""

    #: nominal frames per second of the stream (used for pacing, clip timing and replay time)
    fps: float = 10.0
    #: total number of frames when known in advance (recordings), else None
    frame_count: int | None = None
    #: a live camera is retried when it fails or ends; a recording that ends or fails ends the run
    live: bool = False
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

    def hardware_clips(self) -> HardwareClips | None:
        """The camera's own clip encoder when it has one (a Pi 4's H.264 block); None: record Frame.image.
        Known before open(), so a recorder chooses how it records once."""
        return None

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

    from drivers.camera.scale import downscale

    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return downscale(grey, width)
