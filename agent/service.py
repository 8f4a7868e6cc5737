"""The agent as a systemd service: READY=1 once frames flow, STATUS= lines, and the watchdog fed by whoever is alive.

The notify protocol is one datagram of `KEY=value` lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a leading
'@' names an abstract socket). It is spoken here through `socket` in a dozen lines rather than through a library:
`sdnotify` has had no release since 2017 and `systemd-python` needs libsystemd's headers to build on the unit.

Who feeds WATCHDOG=1: the frame loop, after each frame it finished. The supervisor feeds it only while the camera
is down and that is handled (the loop is retrying the camera, or the camera watchdog has reported a stall or an
error upstream). A frame loop that hangs while the camera is fine starves the watchdog, and systemd restarts it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from dataclasses import dataclass
from typing import Callable, Mapping

from common.clock import Clock

log = logging.getLogger(__name__)

DEFAULT_FEED_INTERVAL_S = 1.0
SEND_TIMEOUT_S = 0.2  # a full socket (a busy service manager) may delay a frame this much, never stop the loop


class Notifier:
    """Sends notify datagrams to one socket; without a socket (not under systemd) it does nothing."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._socket: socket.socket | None = None
        if address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.settimeout(SEND_TIMEOUT_S)

    def send(self, message: str) -> bool:
        if self._socket is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._socket.sendto(message.encode("utf-8"), target)
        except OSError as exc:  # systemd gone or the socket full: the service must not fail over its reporting
            log.debug("notify %r: %s", message, exc)
            return False
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def feed_interval_s(environ: Mapping[str, str]) -> float:
    """Half the watchdog period systemd announces in WATCHDOG_USEC (its own advice), else once a second."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return DEFAULT_FEED_INTERVAL_S
    return usec / 2e6 if usec > 0 else DEFAULT_FEED_INTERVAL_S


@dataclass(frozen=True)
class UnitState:
    """What a person reads in `systemctl status`, handed over by the supervisor each pass."""

    armed: bool
    outbox_depth: int
    camera: str  # the camera watchdog's state: ok, stalled or error
    streaming: bool  # the frame loop has the camera open (False: it waits to retry the camera)


class Service:
    """The agent's side of the service manager: readiness, status line and watchdog."""

    def __init__(self, clock: Clock, notifier: Notifier | None = None,
                 feed_every_s: float = DEFAULT_FEED_INTERVAL_S) -> None:
        self.clock = clock
        self.notifier = notifier or Notifier(None)
        self.feed_every_s = feed_every_s
        self.ready = False
        self.link: Callable[[], str] = lambda: "off"  # the pipeline sets it once the uplink exists
        self._last_feed: float | None = None
        self._alarm_day: dt.date | None = None
        self._alarms_today = 0

    @classmethod
    def from_environment(cls, clock: Clock, environ: Mapping[str, str] | None = None) -> Service:
        environ = os.environ if environ is None else environ
        return cls(clock, Notifier(environ.get("NOTIFY_SOCKET") or None), feed_interval_s(environ))

    # from the frame loop -----------------------------------------------------------------------------------
    def frame_done(self) -> None:
        """A frame went all the way through: the first one makes the unit ready, each one is proof of life."""
        if not self.ready:
            self.notifier.send("READY=1\nSTATUS=camera delivers frames")
            self.ready = True
        self._feed()

    def alarm_raised(self) -> None:
        today = self._today()
        if today != self._alarm_day:
            self._alarm_day, self._alarms_today = today, 0
        self._alarms_today += 1

    def stopping(self) -> None:
        self.notifier.send("STOPPING=1\nSTATUS=stopping")

    # from the supervisor ------------------------------------------------------------------------------------
    def supervised(self, state: UnitState) -> None:
        """One supervisor pass: a status line, and the watchdog fed if the camera being down explains no frames."""
        self.notifier.send(f"STATUS={self.status_line(state)}")
        if not state.streaming or state.camera != "ok":
            self._feed()

    def status_line(self, state: UnitState) -> str:
        camera = state.camera if state.streaming else f"{state.camera}, not open"
        return (f"{'armed' if state.armed else 'disarmed'}; {self.alarms_today} alarms today; "
                f"outbox {state.outbox_depth}; link {self.link()}; camera {camera}")

    @property
    def alarms_today(self) -> int:
        return self._alarms_today if self._alarm_day == self._today() else 0

    def _today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.clock.wall()).date()  # the site's local day

    def _feed(self) -> None:
        now = self.clock.monotonic()
        if self._last_feed is not None and now - self._last_feed < self.feed_every_s:
            return
        self._last_feed = now
        self.notifier.send("WATCHDOG=1")
