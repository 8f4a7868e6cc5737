"""Injected time: the engine, recorder, uplink and health read time only through a Clock."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals)."""

    def wall(self) -> float:
        """Seconds since the Unix epoch (for timestamps people read)."""

    def wait(self, seconds: float) -> None:
        """Let `seconds` pass (pacing, reconnect backoff); a manual clock moves itself instead of sleeping."""


class SystemClock:
    """The real clocks of the machine."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that moves only when told to; for tests and for replays timed by frame index."""

    def __init__(self, wall_start: float = 1_700_000_000.0, monotonic_start: float = 0.0) -> None:
        self._wall = wall_start
        self._mono = monotonic_start

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall

    def wait(self, seconds: float) -> None:
        """Waiting on a manual clock is moving it: code that paces or backs off runs at once in tests."""
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go back")
        self._mono += seconds
        self._wall += seconds

    def step_wall(self, seconds: float) -> None:
        """Step the wall clock alone, as NTP's first sync or a person setting the time does (either way)."""
        self._wall += seconds

    def set_monotonic(self, value: float) -> None:
        """Move to an absolute monotonic time (never backwards); wall time follows."""
        self.advance(max(0.0, value - self._mono))


def iso_utc(epoch_seconds: float) -> str:
    """UTC ISO-8601 with milliseconds, e.g. 2026-11-25T08:45:00.123Z."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
