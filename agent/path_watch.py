"""Dual-path supervision: when the MQTT path has been down for long enough, say so on the other path.

The event goes into the outbox like any other; the DC-09 link reads it and sends YC (path trouble), then YK when
MQTT is back, so the alarm receiving centre learns that the unit's own station cannot see it. Driven by the
injected clock's monotonic time, one reading per supervisor pass.
"""

from __future__ import annotations

from typing import Callable, Literal

Change = Literal["lost", "restored"]


class PathWatch:
    def __init__(self, is_up: Callable[[], bool], loss_after_s: float) -> None:
        self.is_up = is_up
        self.loss_after_s = loss_after_s
        self._down_since: float | None = None
        self._reported = False

    def check(self, now: float) -> Change | None:
        """"lost" once the path has been down loss_after_s, "restored" when it is back after that; else None."""
        if self.is_up():
            self._down_since = None
            if self._reported:
                self._reported = False
                return "restored"
            return None
        if self._down_since is None:
            self._down_since = now
        if not self._reported and now - self._down_since >= self.loss_after_s:
            self._reported = True
            return "lost"
        return None
