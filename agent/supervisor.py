"""The supervisor: beside the frame loop, so a stalled camera blocks the loop and not the unit's health reports.

Once a second it checks the camera for stalls, keeps outputs timing out and commands applying while no frames
arrive (on the frame timeline extrapolated from the last frame), and sends a heartbeat when one is due.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from agent.analyzer import Analyzer
from agent.control import Control
from agent.evidence.audit import Head
from agent.health import Health
from agent.moment import Moment, Timeline
from agent.path_watch import PathWatch
from agent.reactions import Reactions
from agent.service import Service, UnitState
from agent.signalling import Signaller
from agent.storage.outbox import Outbox
from agent.storage_watch import StorageWatch
from agent.uplink.messages import Identity, PathChange
from agent.uplink.publisher import Publisher
from common.clock import Clock
from drivers.camera.watchdog import CameraWatchdog

log = logging.getLogger(__name__)

PERIOD_S = 1.0

class FrameMark:
    """The last frame seen by the loop: its time on the frame timeline, its index, and when it arrived."""

    def __init__(self) -> None:
        self.ts: float | None = None
        self.index: int | None = None
        self.arrived_mono = 0.0
        self.streaming = False

    def seen(self, ts: float, index: int, monotonic: float) -> None:
        self.ts, self.index, self.arrived_mono = ts, index, monotonic

class Supervisor:
    def __init__(self, *, identity: Identity, clock: Clock, lock: threading.RLock, mark: FrameMark,
                 timeline: Timeline, watchdog: CameraWatchdog, analyzer: Analyzer, control: Control,
                 signaller: Signaller, reactions: Reactions, publisher: Publisher, outbox: Outbox, health: Health,
                 heartbeat_interval_s: float, audit_head: Callable[[], Head],
                 service: Service, storage: StorageWatch | None = None) -> None:
        self.identity, self.clock, self.lock, self.mark, self.timeline = identity, clock, lock, mark, timeline
        self.watchdog, self.analyzer, self.control, self.signaller = watchdog, analyzer, control, signaller
        self.reactions, self.publisher, self.outbox, self.health = reactions, publisher, outbox, health
        self.heartbeat_interval_s = heartbeat_interval_s
        self.audit_head = audit_head
        self.service = service
        self.storage = storage  # full disk / outbox faults, evicted reports, retention
        self.mqtt_watch: PathWatch | None = None  # set when a second path (DC-09) can report MQTT's loss
        self._mqtt_lost_at = 0.0
        self._next_heartbeat = 0.0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a dead supervisor would silently end heartbeats and stall checks
                log.exception("supervisor pass failed; the next pass runs in %.0f s", PERIOD_S)
            if self._done.wait(PERIOD_S):
                return

    def tick(self) -> None:
        """One pass, under the unit's lock (the frame loop holds it per frame)."""
        with self.lock:
            if self.mark.streaming:
                self.reactions.camera_events(self.watchdog.tick())
            self._while_no_frames()
            self._watch_paths()
            if self.storage is not None:
                self.storage.tick()
            self._maybe_heartbeat()
            self.service.supervised(UnitState(armed=self.analyzer.status().armed, outbox_depth=self.outbox.depth(),
                                              camera=self.watchdog.state, streaming=self.mark.streaming))

    def _while_no_frames(self) -> None:
        """With the camera stalled or down, outputs must still time out and commands still apply."""
        idle = self.clock.monotonic() - self.mark.arrived_mono
        if self.mark.ts is None or idle < PERIOD_S:
            return
        moment: Moment = self.timeline.at(self.mark.ts + idle, self.mark.index)
        self.signaller.tick(moment.ts)
        self.control.apply_commands(moment)

    def _watch_paths(self) -> None:
        if self.mqtt_watch is None:
            return
        now = self.clock.monotonic()
        change = self.mqtt_watch.check(now)
        if change is not None:
            down_s = self.mqtt_watch.loss_after_s if change == "lost" else now - self._mqtt_lost_at
            self._mqtt_lost_at = now if change == "lost" else self._mqtt_lost_at
            self.reactions.publish(lambda env: PathChange(**env, path="mqtt", ok=change == "restored",
                                                          down_s=round(down_s, 1)), self.clock.wall(), None)

    def _maybe_heartbeat(self) -> None:
        now = self.clock.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.heartbeat_interval_s
        status = self.analyzer.status()
        self.publisher.heartbeat(self.health.heartbeat(
            self.identity, armed=status.armed, outbox_depth=self.outbox.depth(),
            outbox_bytes=self.outbox.size_bytes(), camera=self.watchdog.status(), tamper=status.tamper,
            inputs=status.inputs, signalling={"mode": self.signaller.mode, "active": self.signaller.active},
            detector_faults=status.detector_faults, audit=self.audit_head(), loan=self.control.loan))
