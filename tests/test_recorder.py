"""Recorder: bounded pre-roll, real H.264 MP4 clips decoded back with PyAV, snapshot, SHA-256 at creation."""

import hashlib

import av
import cv2
import numpy as np
import pytest

from agent.config import RecorderSettings
from agent.storage.clip_sink import PreRollBuffer
from agent.storage.recorder import Recorder
from common.clock import ManualClock
from common.errors import StorageError
from drivers.camera.synthetic import SyntheticCamera
from models.motion import Box


def synthetic_frames(seconds: float, fps: float = 10.0, width: int = 320, height: int = 180):
    with SyntheticCamera(clock=ManualClock(), width=width, height=height, fps=fps, duration_s=seconds,
                         detect_width=160) as camera:
        yield from camera.frames()


def test_pre_roll_keeps_only_the_last_seconds():
    ring = PreRollBuffer(seconds=2.0, jpeg_quality=80)
    image = np.random.default_rng(1).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    for index in range(100):
        ring.push(index / 10, image)
    assert len(ring) == 21  # frames at 7.8 .. 9.9 s inclusive of the 2 s window
    frames = list(ring.take())
    assert frames[0][0] == pytest.approx(7.9, abs=0.11) and frames[-1][0] == pytest.approx(9.9)
    assert cv2.imdecode(np.frombuffer(frames[0][1], np.uint8), cv2.IMREAD_COLOR).shape == image.shape
    assert len(ring) == 0 and ring.bytes == 0


def test_clip_holds_pre_roll_alarm_and_post_roll(tmp_path):
    recorder = Recorder(RecorderSettings(pre_roll_s=3.0), tmp_path, fps=10.0)
    snapshot = clip = None
    for frame in synthetic_frames(12.0):
        if frame.index == 50:
            snapshot = recorder.snapshot("ev1", frame, [Box(10, 10, 20, 40, 800)])
            recorder.start("ev1", frame)
        elif frame.index == 90:
            clip = recorder.finish()
        else:
            recorder.push(frame)
    assert clip is not None and snapshot is not None
    assert clip.path == tmp_path / "ev1" / "clip.mp4" and not list(tmp_path.rglob("*.part"))
    assert clip.sha256 == hashlib.sha256(clip.path.read_bytes()).hexdigest()
    assert clip.size == clip.path.stat().st_size
    with av.open(str(clip.path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        decoded = [frame.time for frame in container.decode(stream)]
    # 3 s of pre-roll before frame 50 plus frames 50..89 -> 7 s of video
    assert len(decoded) == pytest.approx(70, abs=1)
    assert decoded[-1] - decoded[0] == pytest.approx(6.9, abs=0.15)
    image = cv2.imread(str(snapshot.path))
    assert image.shape == (180, 320, 3)
    assert snapshot.sha256 == hashlib.sha256(snapshot.path.read_bytes()).hexdigest()
    # the box (scaled 2x from the 160-px detection image) is drawn in red on the snapshot
    blue, green, red = (int(v) for v in image[20, 40])
    assert red > 180 and blue < 80 and green < 80


def test_finish_without_recording_is_an_error(tmp_path):
    with pytest.raises(StorageError, match="no clip"):
        Recorder(RecorderSettings(), tmp_path, fps=10.0).finish()


def test_unknown_codec_is_a_clear_error(tmp_path):
    recorder = Recorder(RecorderSettings(codec="no-such-codec"), tmp_path, fps=10.0)
    frame = next(synthetic_frames(1.0))
    with pytest.raises(StorageError, match="no-such-codec"):
        recorder.start("ev1", frame)
