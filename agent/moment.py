"""When something happened on the unit: the frame timeline, the frame index and the wall time people read."""

from __future__ import annotations

from dataclasses import dataclass

from common.clock import Clock

#: a change of (wall - monotonic) bigger than this between two readings is the wall clock being stepped (NTP after
#: boot on a Pi without RTC, or a person), not the drift a running clock is slewed by
STEP_TOLERANCE_S = 2.0


@dataclass(frozen=True, slots=True)
class Moment:
    ts: float           # seconds on the camera's timeline (what the engine, signalling and GPIO run on)
    frame: int | None   # frame index, None between frames (supervisor)
    wall: float         # seconds since the epoch, for the timestamps in messages


class Timeline:
    """Wall time of frame times, on one clock with the heartbeats, results and status.

    A live camera stamps frames on the monotonic clock, so a frame's wall time is the clock's wall time now less
    the frame's age: after a clock step, events, heartbeats and the armed schedule all follow the new time together.
    A recording's frames are timed from its first frame (index / fps), so a replay gives the same result every run.
    """

    def __init__(self, clock: Clock, live: bool) -> None:
        self._clock = clock
        self._live = live
        self._first_ts: float | None = None
        self._wall_at_first = 0.0
        self._offset: float | None = None   # wall - monotonic at the last reading
        self._stepped = 0.0                 # clock step seen since the last stepped() call

    def at(self, ts: float, frame: int | None) -> Moment:
        offset = self._clock.wall() - self._clock.monotonic()
        if self._offset is not None and abs(offset - self._offset) > STEP_TOLERANCE_S:
            self._stepped += offset - self._offset
        self._offset = offset
        if self._live:
            return Moment(ts, frame, ts + offset)
        if self._first_ts is None:
            self._first_ts, self._wall_at_first = ts, self._clock.wall()
        return Moment(ts, frame, self._wall_at_first + (ts - self._first_ts))

    def stepped(self) -> float:
        """Seconds the wall clock was stepped by since the last call (0.0 when it was not)."""
        stepped, self._stepped = self._stepped, 0.0
        return stepped
