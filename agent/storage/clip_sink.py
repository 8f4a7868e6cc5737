"""Where an alarm's clip comes from: a ClipSink, in software (JPEG pre-roll ring + PyAV) or from the camera's encoder.

The recorder holds one, chosen once by `clip_sink()`. Files are written as `<name>.part` and renamed when
finished, so a crash never leaves a file that looks complete.
"""

from __future__ import annotations

import abc
import collections
import logging
import threading
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from agent.config import RecorderSettings
from agent.storage.encoding import ClipWriter, EncoderThread, check_encoder
from agent.storage.media import CLIP_CONTENT_TYPES, MediaFile, finalize
from common.errors import StorageError
from drivers.camera.base import Camera, Frame, HardwareClips

log = logging.getLogger(__name__)

CLIP_NAME = "clip.mp4"
#: raw (yuv420p) frames a recording's clip queues before its loop waits for the encoder: enough to keep it busy
WAIT_QUEUE_FRAMES = 2


class ClipSink(abc.ABC):
    """Sees every frame the recorder is given; start() opens a clip that begins with the pre-roll, finish()
    closes it into a fingerprinted MediaFile, abandon() drops it (no .part file is left)."""

    #: frames of the current (or last) clip left out because the encoder was behind; None: not counted here
    dropped_frames: int | None = None

    @property
    @abc.abstractmethod
    def recording(self) -> bool:
        """True between start() and finish() / abandon()."""

    @property
    @abc.abstractmethod
    def buffered_bytes(self) -> int:
        """Pre-roll bytes the agent holds in memory (0 when the camera keeps the pre-roll)."""

    def check(self) -> None:
        """At start-up: ConfigError if this sink cannot record as configured (nothing to check by default)."""
        return None

    @abc.abstractmethod
    def push(self, frame: Frame) -> None:
        """A frame outside a clip (pre-roll) or inside one."""

    @abc.abstractmethod
    def start(self, folder: Path, frame: Frame, fps: float) -> None:
        """Open the clip in `folder` with the pre-roll and the triggering frame; fps is the stream's nominal rate."""

    @abc.abstractmethod
    def finish(self) -> MediaFile:
        """Close the clip being recorded (only called while recording)."""

    @abc.abstractmethod
    def abandon(self) -> None:
        """Drop the clip being recorded, if any, after a storage failure."""


class PreRollBuffer:
    """The last `seconds` of frames as JPEG bytes, and never more than `max_bytes` of them (the oldest go
    first), so memory stays bounded whatever the resolution and however busy the scene."""

    def __init__(self, seconds: float, jpeg_quality: int, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        self._frames: collections.deque[tuple[float, bytes]] = collections.deque()
        self.bytes = 0
        #: frames dropped from the ring's old end by the byte cap (the pre-roll is then shorter than `seconds`)
        self.capped = 0

    def push(self, ts: float, image: np.ndarray) -> None:
        if self.seconds <= 0:
            return
        data = self.encode(image)
        self._frames.append((ts, data))
        self.bytes += len(data)
        while self._frames and self._frames[0][0] < ts - self.seconds:
            self.bytes -= len(self._frames.popleft()[1])
        while len(self._frames) > 1 and self.bytes > self.max_bytes:
            self.bytes -= len(self._frames.popleft()[1])
            if not self.capped:
                log.warning("pre-roll ring full at %d bytes (recorder.pre_roll_max_bytes): it holds %.1f s, "
                            "not %.1f s", self.max_bytes, ts - self._frames[0][0], self.seconds)
            self.capped += 1

    def encode(self, image: np.ndarray) -> bytes:
        ok, encoded = cv2.imencode(".jpg", image, self._params)
        if not ok:
            raise StorageError("JPEG encoding of a pre-roll frame failed")
        return encoded.tobytes()

    def take(self) -> collections.deque[tuple[float, bytes]]:
        """Hand over the buffered (ts, JPEG) frames as they are, no decoding; the ring starts empty again."""
        frames, self._frames = self._frames, collections.deque()
        self.bytes = 0
        return frames

    def __len__(self) -> int:
        return len(self._frames)


class CatchUp:
    """The pre-roll as the encoder thread reads it, and every frame pushed while it is still reading: at an
    alarm's start the encoder has seconds of pre-roll to encode, and the frames arriving meanwhile wait here as
    JPEG (~90 kB at 720p) rather than raw in its queue (1.3 MiB each). Once the encoder finds this empty, it is
    caught up, and later frames go to its queue raw (no JPEG round trip). Beyond the pre-roll, at most
    `extra_bytes` wait (the clip queue's size, ~65 frames of 720p as JPEG), so the clip's finish(), which waits
    for every waiting frame, stays bounded: beyond it a frame is dropped from the clip and counted, or
    (wait=True, a recording) the pusher waits for room."""

    def __init__(self, pre_roll: PreRollBuffer, extra_bytes: int, wait: bool) -> None:
        self._frames = pre_roll.take()
        self._encode = pre_roll.encode
        self._bytes = sum(len(data) for _, data in self._frames)
        self.max_bytes = self._bytes + extra_bytes
        self.wait = wait
        self.done = False
        self.dropped = 0
        self._lock = threading.Condition()

    def offer(self, ts: float, image) -> bool:
        """Queue a frame here while the encoder is behind; False once it has caught up (use its queue)."""
        if self.done:
            return False    # checked again under the lock; this only spares a caught-up clip the JPEG encode
        data = self._encode(image)
        with self._lock:
            while not self.done and self._bytes + len(data) > self.max_bytes:
                if not self.wait:
                    self.dropped += 1
                    return True
                self._lock.wait(0.5)
            if self.done:
                return False
            self._frames.append((ts, data))
            self._bytes += len(data)
            return True

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        """Run by the encoder thread: (ts, JPEG) one frame at a time, oldest first, until none is waiting (each
        let go here as it is handed over: the encoder decodes it). Also done when the encoder leaves off early
        (failure, abandon): the generator is closed, and no pusher waits on."""
        try:
            while True:
                with self._lock:
                    if not self._frames:
                        self.done = True    # under the same lock as the check: no frame can slip in between
                        self._lock.notify_all()
                        return
                    ts, data = self._frames.popleft()
                    self._bytes -= len(data)
                    self._lock.notify_all()
                yield ts, data
                del data
        finally:
            self.stop()

    def stop(self) -> None:
        """The clip ends before the encoder caught up: nothing more waits here."""
        with self._lock:
            self.done = True
            self._lock.notify_all()


class SoftwareClipSink(ClipSink):
    """Frames are buffered as JPEG and the clip is encoded with PyAV: works with any camera, and is the only
    way to record the pixels the agent has masked. Encoding (the pre-roll's too) runs in an EncoderThread, so
    an alarm's start costs the frame loop no more than opening a file."""

    def __init__(self, settings: RecorderSettings, queue_bytes: int | None = None,
                 wait_when_full: bool = False) -> None:
        self.settings = settings
        self.queue_bytes = settings.clip_queue_bytes if queue_bytes is None else queue_bytes
        self.wait_when_full = wait_when_full  # a recording (not live) never drops clip frames: it waits
        self.pre_roll = PreRollBuffer(settings.pre_roll_s, settings.buffer_jpeg_quality, settings.pre_roll_max_bytes)
        self._encoder: EncoderThread | None = None
        #: frames of the current (or last) clip dropped because the encoder was behind
        self.dropped_frames = 0

    @property
    def recording(self) -> bool:
        return self._encoder is not None

    @property
    def buffered_bytes(self) -> int:
        return self.pre_roll.bytes

    def check(self) -> None:
        check_encoder(self.settings)

    def push(self, frame: Frame) -> None:
        if self._encoder is not None:
            if not self._catch_up.offer(frame.ts, frame.image):
                self._encoder.offer(frame.ts, frame.image)
            self.dropped_frames = self._encoder.dropped + self._catch_up.dropped
        else:
            self.pre_roll.push(frame.ts, frame.image)

    def start(self, folder: Path, frame: Frame, fps: float) -> None:
        height, width = frame.image.shape[:2]
        writer = ClipWriter(folder / CLIP_NAME, self.settings, fps, width, height)
        self.dropped_frames = 0
        # the frames that arrive while the pre-roll is encoded wait as JPEG, in as many bytes as the raw queue
        queue_bytes = self._queue_bytes(width, height)
        self._catch_up = CatchUp(self.pre_roll, queue_bytes, self.wait_when_full)
        self._encoder = EncoderThread(writer, self._catch_up, queue_bytes, self.wait_when_full)
        self.push(frame)

    def _queue_bytes(self, width: int, height: int) -> int:
        """What may wait for the encoder. A live camera's clip needs the configured room to ride out the encoder's
        jitter; a recording waits for the encoder whenever it is full, so more room than WAIT_QUEUE_FRAMES raw
        frames would only hold memory (up to 2 x clip_queue_bytes at the peak, issue 12), not speed it up."""
        if not self.wait_when_full:
            return self.queue_bytes
        return min(self.queue_bytes, WAIT_QUEUE_FRAMES * width * height * 3 // 2)

    def finish(self) -> MediaFile:
        encoder, self._encoder = self._encoder, None
        self._catch_up.stop()
        self.dropped_frames = encoder.dropped + self._catch_up.dropped
        if self.dropped_frames:
            log.warning("clip %s: %d frames dropped, the encoder could not keep up", encoder.writer.final_path,
                        self.dropped_frames)
        return encoder.close()

    def abandon(self) -> None:
        if self._encoder is not None:
            self._catch_up.stop()
            self._encoder.abandon()
            self._encoder = None


class CameraClipSink(ClipSink):
    """The camera's encoder keeps the pre-roll and writes the clip (a Pi 4's H.264 block): no frame is touched."""

    def __init__(self, clips: HardwareClips) -> None:
        self.clips = clips
        self._clip: tuple[Path, Path] | None = None   # (part, final) being written by the camera

    @property
    def recording(self) -> bool:
        return self._clip is not None

    @property
    def buffered_bytes(self) -> int:
        return 0

    def push(self, frame: Frame) -> None:
        pass    # the camera's encoder has already taken this frame into its own pre-roll or clip

    def start(self, folder: Path, frame: Frame, fps: float) -> None:
        final = folder / f"clip.{self.clips.clip_format}"
        part = final.with_name(final.name + ".part")
        self.clips.start(part)
        self._clip = (part, final)

    def finish(self) -> MediaFile:
        (part, final), self._clip = self._clip, None
        self.clips.stop()
        return finalize(part, final, CLIP_CONTENT_TYPES[final.suffix.lstrip(".")])

    def abandon(self) -> None:
        if self._clip is not None:
            part, _ = self._clip
            self._clip = None
            self.clips.stop()
            part.unlink(missing_ok=True)


def clip_sink(settings: RecorderSettings, camera: Camera | None, allow_hardware: bool) -> ClipSink:
    """The camera's own clips when it has them and hardware is allowed; privacy masks disallow it, since the
    hardware stream is encoded before the agent sees (and blanks) the pixels."""
    clips = camera.hardware_clips() if camera is not None and allow_hardware else None
    if clips is not None:
        return CameraClipSink(clips)
    return SoftwareClipSink(settings, wait_when_full=camera is not None and not camera.live)
