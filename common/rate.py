"""The one rate meter: events per second (frames delivered, frames processed) over recent arrivals."""

from __future__ import annotations

from collections import deque


class RateMeter:
    """Arrival times in, events per second out.

    window_s: only arrivals this recent count (None: no time limit); max_samples: at most this many recent
    arrivals count (None: no count limit).
    """

    def __init__(self, window_s: float | None = None, max_samples: int | None = None) -> None:
        self.window_s = window_s
        self._arrivals: deque[float] = deque(maxlen=max_samples)

    def mark(self, at: float) -> None:
        """One event happened at monotonic time `at`."""
        self._arrivals.append(at)
        self._forget_before(at)

    def rate(self, now: float | None = None) -> float:
        """Events per second. With `now`, measured up to now, so a source that just stopped shows a falling rate
        (and none once its arrivals leave the window); without, between the first and last arrival."""
        if now is not None:
            self._forget_before(now)
        arrivals = self._arrivals
        if len(arrivals) < 2:
            return 0.0
        span = arrivals[-1] - arrivals[0]
        if now is not None:
            span = max(now - arrivals[0], span)
        return (len(arrivals) - 1) / span if span > 0 else 0.0

    def _forget_before(self, now: float) -> None:
        if self.window_s is None:
            return
        cutoff = now - self.window_s
        while self._arrivals and self._arrivals[0] < cutoff:
            self._arrivals.popleft()
