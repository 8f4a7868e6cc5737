"""OpenCV capture against real MP4 files written here, a missing device, and a source that drops out and returns.

Time is a ManualClock; waiting on it advances it (and can change the world, e.g. bring the file back),
so reconnect backoff is checked without waiting.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from agent.config import CameraSettings
from common.backoff import Backoff
from common.clock import ManualClock
from common.errors import SourceError
from drivers.camera.opencv_capture import OpenCVCamera, OpenCVSettings, parse_source
from drivers.camera.watchdog import CameraFault, CameraRestored, CameraWatchdog, WatchdogSettings
from tests.held_frames import assert_kept_frames_keep_their_pixels

FRAMES = 12


def _write_mp4(path: Path, frames: int = FRAMES, size: tuple[int, int] = (160, 120)) -> Path:
    """A real H.264 MP4: a white square moving right over a dark background; brightness encodes the index."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            image = np.full((size[1], size[0], 3), (10 + 15 * index) % 250, np.uint8)
            image[40:80, (8 * index) % 120: (8 * index) % 120 + 30] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class ScriptedClock(ManualClock):
    """A manual clock that records each wait and runs a scripted action at a given wait (1-based)."""

    def __init__(self, actions: dict | None = None) -> None:
        super().__init__()
        self.delays: list[float] = []
        self.actions = actions or {}

    def wait(self, seconds: float) -> None:
        self.delays.append(seconds)
        super().wait(seconds)
        action = self.actions.get(len(self.delays))
        if action:
            action()


def _camera(source: Path | str, settings: OpenCVSettings, clock: ManualClock, on_error=None):
    camera_settings = CameraSettings(backend="opencv", source=str(source), detect_width=80)
    return OpenCVCamera(camera_settings, settings, clock=clock, on_error=on_error)


def _background_level(frame) -> int:
    return int(frame.image[5, 150, 1])


def test_reads_a_real_mp4_and_reopens_it_when_it_ends(tmp_path):
    video = _write_mp4(tmp_path / "cam.mp4")
    clock = ScriptedClock()
    errors: list[str] = []
    camera = _camera(video, OpenCVSettings(reconnect_min_s=0.5), clock, errors.append)
    with camera:
        assert camera.fps == pytest.approx(10.0)
        frames = list(itertools.islice(camera.frames(), 2 * FRAMES + 3))
    assert [f.index for f in frames] == list(range(2 * FRAMES + 3))
    first = frames[0]
    assert first.image.shape == (120, 160, 3) and first.luma.shape == (60, 80)
    levels = [_background_level(f) for f in frames]
    assert levels[:FRAMES] == pytest.approx([10 + 15 * i for i in range(FRAMES)], abs=4)
    assert levels[FRAMES:2 * FRAMES] == pytest.approx(levels[:FRAMES], abs=1), "replayed from the start"
    # Each end of the stream is one dropout, each followed by one successful reconnect after the first delay.
    assert clock.delays == [0.5, 0.5]
    assert errors == [f"opencv camera {str(video)!r}: stopped delivering frames"] * 2
    assert camera.reconnects == 2
    assert frames[FRAMES].ts == pytest.approx(0.5) and frames[-1].ts == pytest.approx(1.0)


def test_a_held_frame_keeps_its_pixels_while_buffers_are_used_again(tmp_path):
    video = _write_mp4(tmp_path / "cam.mp4", frames=24)
    capture = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    expected = [capture.read()[1] for _ in range(24)]     # a fresh array each, as the camera read before its pool
    capture.release()
    with _camera(video, OpenCVSettings(), ManualClock()) as camera:
        # every frame differs everywhere (its brightness)
        assert_kept_frames_keep_their_pixels(itertools.islice(camera.frames(), 24), expected,
                                             (slice(20, 60), slice(30, 90)))


def test_missing_device_and_file_are_clear_errors(tmp_path):
    clock = ManualClock()
    with pytest.raises(SourceError, match=r"device /dev/video97 does not exist"):
        _camera("/dev/video97", OpenCVSettings(), clock).open()
    with pytest.raises(SourceError, match=r"video file .*nowhere\.mp4 does not exist"):
        _camera(tmp_path / "nowhere.mp4", OpenCVSettings(), clock).open()
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video")
    with pytest.raises(SourceError, match="cannot open"):
        _camera(not_video, OpenCVSettings(), clock).open()
    with pytest.raises(SourceError, match="camera.source is empty"):
        parse_source("  ")
    assert parse_source("0") == 0 and parse_source("rtsp://10.0.0.2/stream") == "rtsp://10.0.0.2/stream"


def test_lost_source_is_retried_with_capped_backoff_until_it_returns(tmp_path):
    spare = _write_mp4(tmp_path / "spare.mp4")
    video = tmp_path / "cam.mp4"
    shutil.copy(spare, video)
    # The camera vanishes when the stream ends and comes back during the 6th wait.
    clock = ScriptedClock({1: video.unlink, 6: lambda: shutil.copy(spare, video)})
    watchdog = CameraWatchdog(WatchdogSettings(stall_after_s=5, restore_frames=2), clock)
    events: list = []
    settings = OpenCVSettings(reconnect_min_s=0.5, reconnect_max_s=3.0)
    camera = _camera(video, settings, clock, lambda message: events.extend(watchdog.error(message)))
    with camera:
        for frame in itertools.islice(camera.frames(), FRAMES + 4):
            events.extend(watchdog.frame_arrived(frame.ts))
            clock.advance(0.1)              # the pipeline's work on each frame takes time
    assert clock.delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert "does not exist" in camera.last_error
    assert [type(e) for e in events] == [CameraFault, CameraRestored]
    assert events[0].reason == "error" and events[1].down_s == pytest.approx(12.5 + 0.1)
    assert watchdog.state == "ok"


def test_gives_up_after_max_reconnects_with_a_clear_error(tmp_path):
    video = _write_mp4(tmp_path / "cam.mp4", frames=3)
    clock = ScriptedClock({1: video.unlink})
    camera = _camera(video, OpenCVSettings(reconnect_min_s=1, reconnect_max_s=60, max_reconnects=3), clock)
    with camera, pytest.raises(SourceError, match=r"does not exist; gave up after 3 reconnect attempts"):
        for _ in camera.frames():
            pass
    assert clock.delays == [1, 2, 4]


def test_close_stops_the_stream_and_settings_are_checked(tmp_path):
    video = _write_mp4(tmp_path / "cam.mp4", frames=30)
    clock = ManualClock()
    camera = _camera(video, OpenCVSettings(), clock)
    camera.open()
    seen = 0
    for _ in camera.frames():
        seen += 1
        if seen == 5:
            camera.close()
    assert seen == 5
    camera.close()                          # twice is fine
    with pytest.raises(SourceError, match="not open"):
        next(camera.frames())
    with pytest.raises(ValidationError, match="reconnect_min_s must not exceed"):
        OpenCVSettings(reconnect_min_s=10, reconnect_max_s=5)
    with pytest.raises(ValidationError):
        OpenCVSettings(fourcc="mjpeg")
    settings = OpenCVSettings(reconnect_min_s=0.5, reconnect_max_s=4)
    backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)  # what the reconnect loop waits
    assert [backoff.next() for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on loopback serving tmp_path (an IP camera's stream, as FFmpeg sees it)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_network_stream_is_read_and_reopened_over_http(tmp_path, http_server):
    _write_mp4(tmp_path / "stream.mp4")
    url = f"http://127.0.0.1:{http_server.server_address[1]}/stream.mp4"
    clock = ScriptedClock()
    camera = _camera(url, OpenCVSettings(open_timeout_s=5, read_timeout_s=5), clock)
    with camera:
        frames = list(itertools.islice(camera.frames(), FRAMES + 2))
    assert [_background_level(f) for f in frames[FRAMES:]] == pytest.approx([10, 25], abs=4)
    assert clock.delays == [0.5] and camera.reconnects == 1


def test_unreachable_stream_url_is_a_clear_error():
    import socket

    with socket.socket() as sock:           # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    clock = ManualClock()
    camera = _camera(f"http://127.0.0.1:{port}/cam", OpenCVSettings(open_timeout_s=2), clock)
    with pytest.raises(SourceError, match=r"http://127.0.0.1:\d+/cam.*cannot open"):
        camera.open()
