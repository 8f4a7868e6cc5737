"""The one "must hold for N seconds" debounce: a condition is raised once present hold_s, cleared once absent hold_s.

Driven by the caller's timestamps (frame time), never by a clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Change = Literal["raised", "cleared"]


@dataclass
class Hold:
    """A condition (present = a reason string, absent = None) debounced by hold_s both ways."""

    hold_s: float
    active: bool = False
    reason: str | None = None    #: the reason it was raised with (kept after clearing, for the clear event)
    since: float = 0.0           #: when it was last raised
    _pending_since: float | None = None

    def update(self, ts: float, reason: str | None) -> Change | None:
        """Feed the condition as seen at ts; returns "raised" or "cleared" on a change, else None."""
        if (reason is not None) == self.active:
            self._pending_since = None
            return None
        if self._pending_since is None:
            self._pending_since = ts
        if ts - self._pending_since < self.hold_s:
            return None
        self._pending_since = None
        if reason is not None:
            self.active, self.reason, self.since = True, reason, ts
            return "raised"
        self.active = False
        return "cleared"
