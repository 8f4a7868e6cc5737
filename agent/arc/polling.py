"""The thread every ARC link runs in: poll while there is work, sleep until woken or the idle wait passes, and
back off (1 s doubling to 60 s) while poll() keeps raising, so a broken link neither spins nor fills the log."""

from __future__ import annotations

import logging
import threading

from common.backoff import Backoff

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.05   # a link also looks at the outbox this often when nobody wakes it
ERROR_MIN_S = 1.0    # first wait after poll() raised
ERROR_MAX_S = 60.0   # longest wait while it keeps raising


class PollingLink:
    """Subclasses give `poll() -> bool` (True: did something, call again at once) and a thread name."""

    thread_name = "arc-link"

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors = Backoff(ERROR_MIN_S, ERROR_MAX_S)
        self._last_error = ""      # repr of the error poll() raised last ("" after a good poll)
        self.error_count = 0       # polls in a row that raised

    def poll(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def notify(self) -> None:
        """A row was stored: look at once rather than at the next poll."""
        self._wake.set()

    def step(self) -> float:
        """One poll; returns how long to wait before the next: 0 when it did work, IDLE_WAIT_S when idle, the
        error backoff when poll() raised."""
        try:
            busy = self.poll()
        except Exception as exc:  # noqa: BLE001 - the link outlives any one bad row or receiver; the row stays queued
            return self._poll_failed(exc)
        self._errors.reset()
        self._last_error, self.error_count = "", 0
        return 0.0 if busy else IDLE_WAIT_S

    def _poll_failed(self, exc: Exception) -> float:
        delay = self._errors.next()
        self.error_count += 1
        if repr(exc) != self._last_error:
            log.exception("%s: unexpected error; retrying in %.0f s", self.thread_name, delay)
        else:  # the same again: one line per backoff step, the traceback was logged the first time
            log.error("%s: same error again (%d in a row): %r; retrying in %.0f s", self.thread_name,
                      self.error_count, exc, delay)
        self._last_error = repr(exc)
        return delay

    def _run(self) -> None:
        while not self._stop.is_set():
            wait_s = self.step()
            if self.error_count:
                self._stop.wait(wait_s)  # backing off an error: a new row does not cut the wait short
            elif wait_s:
                self._wake.wait(wait_s)
                self._wake.clear()
