"""The one capped exponential backoff: min_s, 2*min_s, 4*min_s ... up to max_s, back to min_s after a success."""

from __future__ import annotations


class Backoff:
    """Delays before successive retries. next() gives the delay before the next attempt; reset() on success."""

    def __init__(self, min_s: float, max_s: float) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s (got {min_s}, {max_s})")
        self.min_s, self.max_s = min_s, max_s
        self.attempts = 0    #: delays handed out since the last reset

    def next(self) -> float:
        # min(max, min * 2**n) written so a long outage cannot overflow the float
        delay = self.max_s if self.attempts >= 64 else min(self.max_s, self.min_s * 2.0 ** self.attempts)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
