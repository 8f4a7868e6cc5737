"""The thread every ARC link runs in: poll while there is work, sleep until woken or the idle wait passes."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.05  # a link also looks at the outbox this often when nobody wakes it


class PollingLink:
    """Subclasses give `poll() -> bool` (True: did something, call again at once) and a thread name."""

    thread_name = "arc-link"

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.poll()
            except Exception:  # noqa: BLE001 - the link outlives any one bad row or receiver; the row stays queued
                log.exception("%s: unexpected error; retrying later", self.thread_name)
                busy = False
            if not busy:
                self._wake.wait(IDLE_WAIT_S)
                self._wake.clear()
