"""Camera watchdog: stalls, errors, frozen frames, recovery and measured fps, all on a ManualClock."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.clock import ManualClock
from drivers.camera.watchdog import CameraFault, CameraRestored, CameraWatchdog, WatchdogSettings


def _feed(watchdog: CameraWatchdog, clock: ManualClock, count: int, fps: float, ts: float) -> tuple[list, float]:
    events = []
    for _ in range(count):
        clock.advance(1.0 / fps)
        ts += 1.0 / fps
        events += watchdog.frame_arrived(ts)
        events += watchdog.tick()
    return events, ts


def test_steady_camera_is_ok_and_reports_its_real_fps():
    clock = ManualClock()
    watchdog = CameraWatchdog(WatchdogSettings(fps_window_s=5), clock)
    events, _ = _feed(watchdog, clock, 100, fps=8.0, ts=0.0)
    assert events == []
    assert watchdog.state == "ok"
    assert watchdog.fps == pytest.approx(8.0, rel=0.03)
    assert watchdog.status()["frames"] == 100


def test_stall_raises_one_fault_then_restore_after_enough_frames():
    clock = ManualClock()
    watchdog = CameraWatchdog(WatchdogSettings(stall_after_s=5, restore_frames=3), clock)
    _, ts = _feed(watchdog, clock, 20, fps=10.0, ts=0.0)
    clock.advance(4.9)
    assert watchdog.tick() == []
    clock.advance(0.2)
    (fault,) = watchdog.tick()
    assert isinstance(fault, CameraFault) and fault.reason == "stalled"
    assert fault.at == pytest.approx(clock.monotonic()) and fault.wall == pytest.approx(clock.wall())
    assert watchdog.state == "stalled"
    clock.advance(30)
    assert watchdog.tick() == [], "a fault is raised once, not on every tick"
    assert watchdog.fps == 0.0
    events, ts = _feed(watchdog, clock, 2, fps=10.0, ts=ts)
    assert events == [] and watchdog.state == "stalled"
    (restored,) = watchdog.frame_arrived(ts + 0.1)
    assert isinstance(restored, CameraRestored) and restored.reason == "stalled"
    assert restored.down_s == pytest.approx(30.2, abs=0.01)  # 30 s + two frames at 10 fps
    assert watchdog.state == "ok" and watchdog.faults == 1


def test_camera_that_never_delivers_is_stalled():
    clock = ManualClock()
    watchdog = CameraWatchdog(WatchdogSettings(stall_after_s=3), clock)
    clock.advance(3)
    (fault,) = watchdog.tick()
    assert fault.reason == "stalled" and fault.last_frame_at is None


def test_frozen_camera_repeating_a_timestamp_counts_as_stalled():
    clock = ManualClock()
    watchdog = CameraWatchdog(WatchdogSettings(stall_after_s=2), clock)
    _, ts = _feed(watchdog, clock, 10, fps=10.0, ts=0.0)
    events = []
    for _ in range(30):                     # frames keep coming, but always the same one
        clock.advance(0.1)
        events += watchdog.frame_arrived(ts)
    assert [type(e) for e in events] == [CameraFault]
    assert watchdog.state == "stalled"


def test_errors_fault_and_a_stalled_camera_that_errors_reports_error():
    clock = ManualClock()
    watchdog = CameraWatchdog(WatchdogSettings(stall_after_s=2, restore_frames=1), clock)
    _, ts = _feed(watchdog, clock, 5, fps=10.0, ts=0.0)
    (fault,) = watchdog.error("read failed: /dev/video0")
    assert fault.reason == "error" and fault.message == "read failed: /dev/video0"
    assert watchdog.error("still failing") == []
    assert watchdog.status()["last_error"] == "still failing"
    (restored,) = watchdog.frame_arrived(ts + 1)
    assert restored.reason == "error"
    clock.advance(3)
    assert watchdog.tick()[0].reason == "stalled"
    assert watchdog.error("device gone") == [] and watchdog.state == "error"


def test_settings_are_bounded():
    with pytest.raises(ValidationError):
        WatchdogSettings(stall_after_s=0)
    with pytest.raises(ValidationError):
        WatchdogSettings(restore=3)


def test_a_blocked_camera_is_noticed_by_ticks_from_another_thread():
    """picamera2 can block inside capture_request for ever: only a tick from another thread reveals it."""
    import threading

    clock = ManualClock()
    watchdog = CameraWatchdog(WatchdogSettings(stall_after_s=2), clock)
    _feed(watchdog, clock, 5, fps=10.0, ts=0.0)
    clock.advance(2.5)                      # the camera thread is stuck; the heartbeat thread ticks
    seen: list = []
    ticker = threading.Thread(target=lambda: seen.extend(watchdog.tick()))
    ticker.start()
    ticker.join()
    assert [type(e) for e in seen] == [CameraFault] and watchdog.status()["state"] == "stalled"
    assert watchdog.status()["last_frame_age_s"] == pytest.approx(2.5)
