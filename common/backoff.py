"""The one capped exponential backoff: min_s, 2*min_s, 4*min_s ... up to max_s, back to min_s after a success."""

from __future__ import annotations


class Backoff:
    """Delays before successive retries. next() gives the delay before the next attempt; reset() on success."""

    def __init__(self, min_s: float, max_s: float) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s (got {min_s}, {max_s})")
        self.min_s, self.max_s = min_s, max_s
        self._delay = min_s

    def next(self) -> float:
        delay = self._delay
        self._delay = min(self.max_s, delay * 2.0)  # doubled as it goes, so a long outage cannot overflow
        return delay

    def reset(self) -> None:
        self._delay = self.min_s
