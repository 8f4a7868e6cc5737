"""When something happened on the unit: the frame timeline, the frame index and the wall time people read."""

from __future__ import annotations

from dataclasses import dataclass

from common.clock import Clock


@dataclass(frozen=True, slots=True)
class Moment:
    ts: float           # seconds on the camera's timeline (what the engine, signalling and GPIO run on)
    frame: int | None   # frame index, None between frames (supervisor)
    wall: float         # seconds since the epoch, for the timestamps in messages


class Timeline:
    """Wall time of frame times: replays and live cameras alike are timed from their first frame."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._first_ts: float | None = None
        self._wall_at_first = 0.0

    def at(self, ts: float, frame: int | None) -> Moment:
        if self._first_ts is None:
            self._first_ts, self._wall_at_first = ts, self._clock.wall()
        return Moment(ts, frame, self._wall_at_first + (ts - self._first_ts))
