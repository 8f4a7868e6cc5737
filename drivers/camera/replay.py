"""Replay camera: a video file, an image folder or a glob of images, played as if it were a live camera.

Frame time is index / fps, so a replay gives identical results run to run; `realtime` only adds pacing.
"""

from __future__ import annotations

import glob
import re
import weakref
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from common.clock import Clock
from common.errors import SourceError
from drivers.camera.base import Camera, Frame, make_luma, pace
from drivers.camera.buffers import POOL_KEEP

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def natural_key(path: str) -> list:
    """Sort key that orders 'in2' before 'in10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


def list_images(source: str) -> list[str]:
    """Image files of a folder or glob, in natural order."""
    if Path(source).is_dir():
        names = [str(p) for p in Path(source).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        names = glob.glob(source)
    return sorted(names, key=natural_key)


#: decoded pixel formats whose first plane is the full-size 8-bit luma (Y) itself
Y_PLANE_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21"}
AVCOL_RANGE_JPEG = 2
#: FFmpeg reads up to 5 MB to learn a stream's parameters; 1 MB is still dozens of frames of any video the agent
#: replays (and the header carries them in an MP4), and the rest of the read-ahead would stay in the heap:
#: -2.3 MiB of peak RSS at 720p (issue 12)
PROBE_OPTIONS = {"probesize": str(1_000_000)}
#: limited-range ("TV", 16..235) luma stretched to 0..255, as BGR -> grey of the same frame would give
_TV_TO_FULL = np.clip((np.arange(256) - 16) * 255.0 / 219.0 + 0.5, 0, 255).astype(np.uint8)
_TV_GAIN = 255.0 / 219.0


def tv_to_full(small: np.ndarray) -> np.ndarray:
    """_TV_TO_FULL applied to a uint8 image. cv2.addWeighted (x * gain + offset, rounded and saturated) gives the
    table's bytes for all 256 values (tests/test_replay_camera.py) in 7 us at 320x180 against cv2.LUT's 20."""
    return cv2.addWeighted(small, _TV_GAIN, small, 0.0, -16.0 * _TV_GAIN)


def video_luma(frame, width: int) -> np.ndarray:
    """The decoded frame's detection image straight from its Y plane (a view: no colour conversion, no copy;
    0.01 ms at 720p against 2.5 ms for BGR -> grey), downscaled, then stretched to full range on the small
    image when the video is limited range, so thresholds see the same contrast as from BGR."""
    if frame.format.name not in Y_PLANE_FORMATS:
        return make_luma(frame.to_ndarray(format="gray"), width)
    plane = frame.planes[0]
    y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, :frame.width]
    small = make_luma(y, width)
    full_range = frame.format.name.startswith("yuvj") or frame.color_range == AVCOL_RANGE_JPEG
    return small if full_range else tv_to_full(small)


class BgrFrames:
    """Decoded frames as BGR images in buffers FFmpeg lends again once every image made from one is gone.

    frame.to_ndarray(format="bgr24") builds a scaler (and its threads) per frame and writes into a fresh 2.7 MiB
    buffer (720p), a fresh mmap under the unit's fixed malloc threshold (systemd/pid-agent.service) whose ~680
    page faults cost more than the conversion. A filter graph ("format=bgr24", one thread) keeps its scaler and
    takes its output buffers from a pool; the array is a view of the output frame, which holds its buffer, so a
    buffer goes back to the pool only once no image (or view of one) is left, whoever keeps it. The pixels are
    to_ndarray's, byte for byte (the same swscale conversion, by the frame's own colour tags; tested). FFmpeg's
    pool keeps every buffer it ever lent, so past POOL_KEEP images alive at once a new graph (and pool) is started
    and the old one is freed as its images are let go: a burst does not stay resident."""

    def __init__(self, keep: int = POOL_KEEP) -> None:
        self.keep = keep
        self._graph = None
        self._input: tuple | None = None    # the size, pixel format and colour tags the graph was built for
        self._lent: list[weakref.ref] = []  # the images handed out and still alive (the pool's size, at least)

    def convert(self, frame) -> np.ndarray:
        self._lent = [ref for ref in self._lent if ref() is not None]
        # the colour tags too: a graph's scaler keeps the matrix and range it was set up with, so a stream whose
        # tags change (a camera's encoder restarted, a spliced recording) would convert later frames wrongly
        shape = (frame.width, frame.height, frame.format.name, int(frame.colorspace), int(frame.color_range))
        if self._graph is None or shape != self._input or len(self._lent) >= self.keep:
            # a new graph, a new pool: the old one is freed as the images still out are let go
            self._graph, self._input, self._lent = bgr_graph(frame), shape, []
        self._graph.push(frame)
        image = self._graph.pull().to_ndarray()
        self._lent.append(weakref.ref(image))
        return image


def bgr_graph(frame):
    """FFmpeg filter graph turning frames of `frame`'s size and pixel format into bgr24, on the calling thread."""
    import av

    graph = av.filter.Graph()
    graph.threads = 1   # as decoding: the conversion stays on the decoder's thread, no thread per frame
    source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                              time_base=frame.time_base or Fraction(1, 1000))
    bgr = graph.add("format", "bgr24")
    sink = graph.add("buffersink")
    source.link_to(bgr)
    bgr.link_to(sink)
    graph.configure()
    return graph


class ReplayCamera(Camera):
    """Plays a recording. `fps` is used for image sequences, and for videos whose rate cannot be read."""

    def __init__(self, source: str | Path, *, clock: Clock, fps: float = 10.0, realtime: bool = False,
                 detect_width: int = 320) -> None:
        self.source = str(source)
        self.fps = float(fps)
        self.realtime = realtime
        self.detect_width = detect_width
        self._clock = clock  #: paces realtime playback; frame times stay index / fps whatever the clock
        self._images: list[str] | None = None
        self._container = None

    def open(self) -> None:
        path = Path(self.source)
        if path.is_file():
            self._open_video(path)
            return
        images = list_images(self.source)
        if not images:
            raise SourceError(f"replay source not found or empty: {self.source} "
                              "(expected a video file, an image folder or a glob matching images)")
        self._images = images
        self.frame_count = len(images)

    def _open_video(self, path: Path) -> None:
        import av

        try:
            self._container = av.open(str(path), options=PROBE_OPTIONS)
            stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError) as exc:
            self.close()
            raise SourceError(f"cannot open video {path}: {exc}") from None
        if stream.average_rate:
            self.fps = float(stream.average_rate)
        # a fragmented MP4 (the agent's own clips) has no frame count in its header: told from its duration then
        duration_s = float(stream.duration * stream.time_base) if stream.duration else None
        self.frame_count = stream.frames or (round(duration_s * self.fps) if duration_s else None)

    def frames(self) -> Iterator[Frame]:
        decoded = self._image_frames(self._images) if self._images is not None else self._video_frames()
        started = self._clock.monotonic()
        for index, (image, luma) in enumerate(decoded):
            ts = index / self.fps
            if self.realtime:
                pace(started, ts, self._clock)
            yield Frame(ts=ts, index=index, image=image, luma=luma)
            del image, luma     # not held while the next frame is decoded (see FrameLoop._stream)

    def _image_frames(self, images: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for name in images:
            image = cv2.imread(name, cv2.IMREAD_COLOR)
            if image is None:
                raise SourceError(f"cannot decode image {name}")
            yield image, make_luma(image, self.detect_width)

    def _video_frames(self) -> Iterator[np.ndarray]:
        import av

        if self._container is None:
            raise SourceError(f"replay source {self.source} is not open")
        bgr = BgrFrames()
        try:
            for frame in self._container.decode(video=0):
                yield bgr.convert(frame), video_luma(frame, self.detect_width)
        except av.error.FFmpegError as exc:
            raise SourceError(f"video {self.source} is corrupt or truncated: {exc}") from None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
