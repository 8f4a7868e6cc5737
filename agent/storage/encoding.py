"""Software H.264 with PyAV: the encoder's options, the start-up encoder check, the MP4 clip writer and the
thread that feeds it, so encoding never runs on the frame loop."""

from __future__ import annotations

import logging
import os
import queue
import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from agent.config import RecorderSettings
from agent.storage.media import MediaFile, finalize, fsync_dir
from common.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

PTS_PER_SECOND = 1000
#: raw frames waiting for the encoder thread, in bytes of yuv420p (12 frames = 1.2 s at 1280x720 10 fps): what
#: a clip may fall behind before its frames are dropped (and counted), never detection's
CLIP_QUEUE_BYTES = 16 * 1024 * 1024
#: a clip is a fragmented MP4 (a header, then one moof+mdat per fragment), so a kill or power cut leaves a file that
#: plays up to its last whole fragment; fragments of at most FRAGMENT_S (and one at each keyframe, at least once a
#: second) keep what a kill loses under a second, and each is flushed and fsynced as it is written
FRAGMENT_S = 0.5
KEYFRAME_S = 1.0
MUXER_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof",
                 "frag_duration": str(int(FRAGMENT_S * 1_000_000)),  # microseconds
                 "flush_packets": "1"}  # each fragment reaches the file when written, not when a buffer fills


def to_yuv420(image: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """A BGR image cropped to the even `size` (width, height) as one planar yuv420p array (height * 3/2 rows):
    the encoder's own format, at half the bytes of BGR, converted by OpenCV's SIMD path rather than swscale.
    Written into `out` when given (a YuvBuffers buffer of that shape)."""
    width, height = size
    return cv2.cvtColor(np.ascontiguousarray(image[:height, :width]), cv2.COLOR_BGR2YUV_I420, dst=out)


class YuvBuffers:
    """The yuv420p buffers of one clip's frames, used again once encoded. A fresh 1.3 MiB array per frame
    is a fresh mmap under the unit's fixed malloc threshold (systemd/pid-agent.service), and its ~340 page faults
    cost more CPU than the colour conversion that fills it (1.5 against 0.47 ms per 720p frame here, issue 12).
    At most `keep` wait here for the next frame; more in flight (a full queue) are freed when they come back."""

    def __init__(self, size: tuple[int, int], keep: int = 2) -> None:
        self.size = size
        self.keep = keep
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()   # taken by the frame loop (convert) and the encoder thread (give_back)

    def take(self) -> np.ndarray:
        """A buffer for one frame: a used one when one is free."""
        with self._lock:
            if self._free:
                return self._free.pop()
        width, height = self.size
        return np.empty((height * 3 // 2, width), np.uint8)

    def convert(self, image: np.ndarray) -> np.ndarray:
        """`image` (BGR) as yuv420p, in a buffer from take()."""
        return to_yuv420(image, self.size, self.take())

    def give_back(self, yuv: np.ndarray) -> None:
        """A buffer the encoder is done with (x264 copies each frame into its own picture as it is encoded)."""
        with self._lock:
            if len(self._free) < self.keep:
                self._free.append(yuv)


def encoder_options(settings: RecorderSettings) -> dict[str, str]:
    """x264's quality, speed and threads (config); zerolatency: no lookahead or B-frame queue, so memory stays
    flat and a clip closes promptly. Other encoders (a Pi 4's h264_v4l2m2m) take their defaults."""
    if settings.codec != "libx264":
        return {}
    quality = {"qp": str(settings.qp)} if settings.rate_control == "qp" else {"crf": str(settings.crf)}
    return {**quality, "preset": settings.preset, "tune": "zerolatency", "threads": str(settings.threads or "auto")}


def keyframe_options(fps: float) -> dict[str, str]:
    """A keyframe every KEYFRAME_S at the clip's rate, and only then: x264's scene-cut keyframes (frequent on a
    noisy night image once keyframes are this close) would cost bits and add nothing a fragment needs."""
    return {"g": str(max(1, int(fps * KEYFRAME_S))), "sc_threshold": "0"}


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


#: JPEG's full-range YCbCr (JFIF) -> the limited range of the clip's yuv420p (BT.601, as OpenCV's BGR -> I420 gives it)
FULL_TO_LIMITED_LUMA = np.round(16 + np.arange(256) * 219 / 255).astype(np.uint8)
FULL_TO_LIMITED_CHROMA = np.round(128 + (np.arange(256) - 128) * 224 / 255).astype(np.uint8)


class JpegToYuv:
    """Pre-roll JPEGs straight to the clip's yuv420p: FFmpeg's MJPEG decoder gives the JPEG's own YCbCr planes
    (4:2:0, as the ring encodes them), and a table per plane moves them into limited range, in a YuvBuffers buffer.
    Against decoding to BGR and converting back: no 2.7 MiB BGR frame beside x264 at an alarm's start, and 3.2
    instead of 8.1 ms a 720p frame under the unit's malloc settings (issue 12); the same luma PSNR against the
    source's own conversion (45.1 dB night footage, 40.8 demo yard, JPEG q85), chroma within 0.7 dB (both > 49)."""

    def __init__(self, buffers: YuvBuffers) -> None:
        import av

        self._buffers = buffers
        self._decoder = av.CodecContext.create("mjpeg", "r")

    def convert(self, data: bytes) -> np.ndarray:
        import av

        try:
            (frame,) = self._decoder.decode(av.Packet(data))    # JPEG is intra only: one packet, one frame
        except (av.error.FFmpegError, ValueError) as exc:
            raise StorageError(f"cannot decode a pre-roll frame: {exc}") from None
        if frame.format.name != "yuvj420p":     # not written by PreRollBuffer; the long way round
            return self._buffers.convert(frame.to_ndarray(format="bgr24"))
        width, height = self._buffers.size
        out = self._buffers.take()
        flat = out.reshape(-1)  # I420: the Y plane, then U and V, each a quarter of it
        planes = ((FULL_TO_LIMITED_LUMA, width, height, 0),
                  (FULL_TO_LIMITED_CHROMA, width // 2, height // 2, width * height),
                  (FULL_TO_LIMITED_CHROMA, width // 2, height // 2, width * height * 5 // 4))
        for plane, (table, plane_width, plane_height, offset) in zip(frame.planes, planes, strict=True):
            rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            cv2.LUT(rows[:plane_height, :plane_width], table,
                    dst=flat[offset:offset + plane_width * plane_height].reshape(plane_height, plane_width))
        return out


def video_frame(yuv: np.ndarray, pts: int):
    """A yuv420p array as PyAV's frame at `pts` (in 1/PTS_PER_SECOND), wrapping the array without a copy:
    from_ndarray would add a second 1.3 MiB frame (at 720p) per frame in flight, and its copy."""
    import av

    frame = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(yuv), format="yuv420p")
    frame.pts, frame.time_base = pts, Fraction(1, PTS_PER_SECOND)
    return frame


class ClipWriter:
    """Encodes frames into a fragmented H.264 MP4 with PyAV; pts come from frame time, so gaps and jitter are kept
    honest. The file is fsynced each time a fragment lands in it (see MUXER_OPTIONS), never per frame."""

    def __init__(self, final_path: Path, settings: RecorderSettings, fps: float, width: int, height: int) -> None:
        import av

        self.final_path = final_path
        self.part_path = final_path.with_name(final_path.name + ".part")
        self._size = (width - width % 2, height - height % 2)
        self._first_ts: float | None = None
        self._last_pts = -1
        self._synced_bytes = 0
        self._sync_fd: int | None = None  # the .part file, opened once it exists, to fsync what the muxer wrote
        try:
            self._container = av.open(str(self.part_path), mode="w", format="mp4", container_options=MUXER_OPTIONS)
            self._stream = self._container.add_stream(settings.codec, rate=Fraction(round(fps * 1000), 1000))
        except (av.error.FFmpegError, ValueError) as exc:
            raise StorageError(f"cannot start clip {self.part_path} with codec {settings.codec}: {exc}") from None
        self._stream.width, self._stream.height = self._size
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = Fraction(1, PTS_PER_SECOND)
        self._stream.options = {**encoder_options(settings), **keyframe_options(fps)}

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the clip: the frame's, rounded down to even, as yuv420p needs."""
        return self._size

    def add(self, ts: float, image: np.ndarray) -> None:
        """A BGR frame."""
        self.add_yuv(ts, to_yuv420(image, self._size))

    def add_yuv(self, ts: float, yuv: np.ndarray) -> None:
        """A frame already in yuv420p (see to_yuv420)."""
        import av

        try:
            self._add(ts, yuv)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise StorageError(f"cannot write clip {self.part_path}: {exc}") from None

    def _add(self, ts: float, yuv: np.ndarray) -> None:

        if self._first_ts is None:
            self._first_ts = ts
        pts = int(round((ts - self._first_ts) * PTS_PER_SECOND))
        if pts <= self._last_pts:
            return  # a duplicate timestamp would make the muxer reject the stream
        self._last_pts = pts
        for packet in self._stream.encode(video_frame(yuv, pts)):
            self._container.mux(packet)
        self._sync_new_fragment()

    def _sync_new_fragment(self) -> None:
        """fsync the file when the muxer has written to it since the last sync (a fragment, or the header)."""
        if self._sync_fd is None:
            self._sync_fd = os.open(self.part_path, os.O_RDONLY)
            fsync_dir(self.part_path.parent)  # the .part file's name survives a power cut too
        size = os.fstat(self._sync_fd).st_size
        if size != self._synced_bytes:
            os.fsync(self._sync_fd)
            self._synced_bytes = size

    def _close_sync_fd(self) -> None:
        if self._sync_fd is not None:
            os.close(self._sync_fd)
            self._sync_fd = None

    def close(self) -> MediaFile:
        import av

        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._close_sync_fd()
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
        self._close_sync_fd()
        self.part_path.unlink(missing_ok=True)


_CLOSE, _STOP = "close", "stop"


class EncoderThread:
    """Runs one ClipWriter in its own thread: the JPEG pre-roll is decoded and encoded there, then each offered
    frame in turn. When the queue holds `queue_bytes`, a live camera's next frame is dropped from the clip and
    counted (the loop must keep up with the camera); a recording's waits for room instead (wait_when_full), since
    a recording has all the time it needs and its clip must not lose frames."""

    def __init__(self, writer: ClipWriter, pre_roll: Iterable[tuple[float, bytes]],
                 queue_bytes: int = CLIP_QUEUE_BYTES, wait_when_full: bool = False) -> None:
        self.writer = writer
        self.queue_bytes = queue_bytes
        self.wait_when_full = wait_when_full
        self.dropped = 0
        self._pre_roll = pre_roll
        self._buffers = YuvBuffers(writer.size)
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0       # bytes offered and not yet encoded
        self._room = threading.Condition()  # guards _pending; notified as the encoder frees room
        self._stopping = False
        self._error: StorageError | None = None
        self._thread = threading.Thread(target=self._run, name=f"clip {writer.final_path.parent.name}",
                                        daemon=True)
        self._thread.start()

    def offer(self, ts: float, image: np.ndarray) -> bool:
        """Queue a BGR frame (converted to yuv420p here, at half the bytes); False when it was dropped. Raises
        the encoder's StorageError once it has failed, as a synchronous writer would."""
        if self._error is not None:
            raise self._error
        yuv = self._buffers.convert(image)
        with self._room:
            while self._pending and self._pending + yuv.nbytes > self.queue_bytes:
                if not self.wait_when_full or self._error is not None or not self._thread.is_alive():
                    self.dropped += 1
                    self._buffers.give_back(yuv)
                    return False
                self._room.wait(0.5)
            self._pending += yuv.nbytes
        self._items.put((ts, yuv))
        return True

    def close(self) -> MediaFile:
        """Wait for every queued frame to be encoded, then finish the file (fsync, rename, SHA-256)."""
        self._items.put(_CLOSE)
        self._thread.join()
        if self._error is None:
            try:
                return self.writer.close()
            except StorageError as exc:
                self._error = exc
        self.writer.abandon()
        raise self._error

    def abandon(self) -> None:
        """Stop without encoding what is left; the .part file is removed."""
        self._stopping = True
        self._items.put(_STOP)
        self._thread.join()
        self.writer.abandon()

    def _run(self) -> None:
        yield_to_the_frame_loop()
        try:
            self._encode_pre_roll()
        except Exception as exc:    # noqa: BLE001 - any failure must reach the caller, not end the thread silently
            self._failed(exc)
        while (item := self._items.get()) not in (_CLOSE, _STOP):
            ts, yuv = item
            if self._error is None and not self._stopping:
                try:
                    self.writer.add_yuv(ts, yuv)
                except Exception as exc:    # noqa: BLE001 - as above
                    self._failed(exc)
            self._buffers.give_back(yuv)
            with self._room:
                self._pending -= yuv.nbytes
                self._room.notify_all()

    def _encode_pre_roll(self) -> None:
        """The JPEG pre-roll (and the frames that wait as JPEG behind it); its MJPEG decoder and the frames in its
        pool go when this returns, not at the clip's end."""
        jpeg = JpegToYuv(self._buffers)
        for ts, data in self._pre_roll:
            if self._stopping:
                break
            yuv = jpeg.convert(data)
            self.writer.add_yuv(ts, yuv)
            self._buffers.give_back(yuv)

    def _failed(self, exc: Exception) -> None:
        self._error = exc if isinstance(exc, StorageError) else StorageError(
            f"cannot write clip {self.writer.part_path}: {exc}")


#: niceness added to the encoder thread (and x264's threads, which inherit it): when the CPU is short, the
#: frame loop and detection run first and the clip falls behind (then drops frames) instead
ENCODER_NICENESS = 10


def yield_to_the_frame_loop() -> None:
    """Lower this thread's priority (Linux sets niceness per thread); elsewhere, or if refused, carry on."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0)
                       + ENCODER_NICENESS)
    except (AttributeError, OSError) as exc:
        log.debug("encoder thread keeps its priority: %s", exc)
