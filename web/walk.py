"""The walk test: on for a set time (then off by itself, so a unit is never left on test), and the list of what
the installer's walk produced (each detection once per object, with its zone, class, bearing and time).

Thread-safe: the page's requests switch it and read the list, the frame loop adds detections.
"""

from __future__ import annotations

import threading

from common.clock import Clock, iso_utc

REPEAT_S = 3.0     # the same zone and class seen again within this long is the same detection, not a new line
MAX_ENTRIES = 200  # a long walk keeps its newest lines


class WalkTest:
    def __init__(self, clock: Clock, minutes: float) -> None:
        self.clock = clock
        self.minutes = minutes
        self._lock = threading.Lock()
        self._ends_mono: float | None = None
        self._entries: list[dict] = []
        self._last_seen: dict[tuple[str, str], float] = {}

    def start(self) -> None:
        with self._lock:
            self._ends_mono = self.clock.monotonic() + self.minutes * 60.0
            self._entries, self._last_seen = [], {}

    def stop(self) -> None:
        with self._lock:
            self._ends_mono = None

    def active(self) -> bool:
        with self._lock:
            return self._active()

    def _active(self) -> bool:
        if self._ends_mono is not None and self.clock.monotonic() >= self._ends_mono:
            self._ends_mono = None  # timed out
        return self._ends_mono is not None

    def add(self, zone: str, label: str, bearing_deg: float | None = None, alarm: bool = False,
            frame_ts: float | None = None) -> bool:
        """A detection (or an alarm raised) while on; repeats of the same object within REPEAT_S are folded.
        True when it made a new line (the unit's strobe blinks once for each)."""
        now = self.clock.monotonic()
        with self._lock:
            if not self._active():
                return False
            key = (zone, "alarm" if alarm else label)
            last = self._last_seen.get(key)
            self._last_seen[key] = now
            if last is not None and now - last < REPEAT_S:
                return False
            self._entries.append({"time": iso_utc(self.clock.wall()), "zone": zone or "(whole picture)",
                                  "class": label, "bearing_deg": bearing_deg, "alarm": alarm,
                                  "frame_ts": None if frame_ts is None else round(frame_ts, 3)})
            del self._entries[:-MAX_ENTRIES]
            return True

    def snapshot(self) -> dict:
        with self._lock:
            active = self._active()
            left = max(0.0, self._ends_mono - self.clock.monotonic()) if active else 0.0
            return {"active": active, "seconds_left": round(left), "minutes": self.minutes,
                    "detections": list(self._entries)}
