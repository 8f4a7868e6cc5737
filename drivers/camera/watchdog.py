"""Camera fault detection: notices a camera that stops delivering frames, freezes or errors, and its recovery.

Clock-driven and passive: the pipeline feeds it frame_arrived(ts) for every frame, error(msg) for every read
error, and tick() from its main loop or heartbeat (a stalled camera delivers nothing, so time alone must
reveal it). Every call returns the events it raised (CameraFault / CameraRestored); `state` and `fps` feed
the heartbeat. Thread-safe: a camera blocked inside a read (picamera2 waits for ever) cannot tick its own
watchdog, so tick() may come from another thread (heartbeat timer, uplink loop).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from common.clock import Clock
from common.rate import RateMeter
from common.settings import Section

CameraState = Literal["ok", "stalled", "error"]


class WatchdogSettings(Section):
    """Camera fault thresholds (config section [camera_watchdog])."""

    stall_after_s: float = Field(5.0, gt=0, le=3600,
                                 description="No new frame for this long (from start-up or the last frame) "
                                             "= the camera is stalled.")
    restore_frames: int = Field(3, ge=1, le=1000,
                                description="Consecutive new frames needed before a faulty camera counts as "
                                            "restored (stops fault/restore flapping).")
    fps_window_s: float = Field(10.0, gt=0, le=600, description="Window over which the delivered fps is measured.")


@dataclass(frozen=True, slots=True)
class CameraFault:
    """The camera stopped working. reason: 'stalled' (no new frames) or 'error' (the driver reported one)."""

    reason: Literal["stalled", "error"]
    message: str
    at: float            #: monotonic time the fault was noticed
    wall: float          #: the same moment as Unix time, for people and payloads
    last_frame_at: float | None


@dataclass(frozen=True, slots=True)
class CameraRestored:
    """The camera is delivering frames again after a fault."""

    at: float
    wall: float
    down_s: float        #: how long the fault lasted
    reason: Literal["stalled", "error"]   #: the fault it recovered from


CameraEvent = CameraFault | CameraRestored


class CameraWatchdog:
    """Tracks one camera's health from the frames and errors it is fed."""

    def __init__(self, settings: WatchdogSettings, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        self._state: CameraState = "ok"
        self._started = clock.monotonic()
        self._last_frame_at: float | None = None
        self._last_ts: float | None = None
        self._frame_rate = RateMeter(window_s=settings.fps_window_s)
        self._fault_at: float | None = None
        self._good_run = 0
        self.last_error: str | None = None
        self.frames = 0
        self.faults = 0
        self._lock = threading.RLock()

    @property
    def state(self) -> CameraState:
        return self._state

    @property
    def fps(self) -> float:
        """Frames per second actually delivered over the last fps_window_s (0 when stalled)."""
        with self._lock:
            # measured to now, not to the last frame, so a camera that just stopped shows a falling rate
            return self._frame_rate.rate(now=self._clock.monotonic())

    def status(self) -> dict:
        """The camera's part of the heartbeat."""
        with self._lock:
            last = self._last_frame_at
            return {"state": self._state, "fps": round(self.fps, 2), "frames": self.frames,
                    "faults": self.faults, "last_error": self.last_error,
                    "last_frame_age_s": None if last is None else round(self._clock.monotonic() - last, 3)}

    def frame_arrived(self, ts: float) -> list[CameraEvent]:
        """A frame came in; ts is its camera timestamp. A timestamp that does not advance is a frozen camera
        repeating its last frame, so it does not count as a new frame."""
        with self._lock:
            now = self._clock.monotonic()
            if self._last_ts is not None and ts <= self._last_ts:
                return self.tick(now)
            self._last_ts = ts
            self._last_frame_at = now
            self._frame_rate.mark(now)
            self.frames += 1
            self._good_run += 1
            if self._state != "ok" and self._good_run >= self.settings.restore_frames:
                return [self._restore(now)]
            return []

    def error(self, message: str) -> list[CameraEvent]:
        """The driver failed to read or open the camera."""
        with self._lock:
            self.last_error = message
            self._good_run = 0
            if self._state == "ok":
                return [self._fault("error", message, self._clock.monotonic())]
            self._state = "error"   # a stalled camera that now also errors: report the sharper state
            return []

    def tick(self, now: float | None = None) -> list[CameraEvent]:
        """Check for a stall; call regularly (every loop pass, and from a timer while frames() blocks)."""
        with self._lock:
            now = self._clock.monotonic() if now is None else now
            since = self._last_frame_at if self._last_frame_at is not None else self._started
            if self._state == "ok" and now - since >= self.settings.stall_after_s:
                self._good_run = 0
                return [self._fault("stalled", f"no new frame for {now - since:.1f} s", now)]
            return []

    def _fault(self, reason: Literal["stalled", "error"], message: str, now: float) -> CameraFault:
        self._state = reason
        self._fault_at = now
        self.faults += 1
        return CameraFault(reason=reason, message=message, at=now, wall=self._wall_at(now),
                           last_frame_at=self._last_frame_at)

    def _restore(self, now: float) -> CameraRestored:
        reason: Literal["stalled", "error"] = "error" if self._state == "error" else "stalled"
        down = now - (self._fault_at if self._fault_at is not None else now)
        self._state = "ok"
        self._fault_at = None
        return CameraRestored(at=now, wall=self._wall_at(now), down_s=down, reason=reason)

    def _wall_at(self, monotonic: float) -> float:
        return self._clock.wall() - (self._clock.monotonic() - monotonic)
