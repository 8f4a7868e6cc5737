"""The agent: wiring and lifecycle of one run, the same for a live camera and a recording.

`Agent` is what `run` and `replay` run. It starts its parts in order and stops them in reverse (one ExitStack), and
has one stop signal (`stop()`). The frame loop is agent/loop.py, one frame's way through the unit
agent/frame_step.py, the reactions to its events agent/reactions.py, arming and commands agent/control.py,
heartbeats and stall checks agent/supervisor.py, start-up recovery agent/recovery.py.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Sequence

import cv2

from agent import __version__
from agent.analyzer import Analyzer
from agent.arc.runner import ArcLinks
from agent.commands import Received
from agent.config import AgentConfig
from agent.control import Control
from agent.evidence.audit import AuditLog
from agent.evidence.keys import UnitKey
from agent.evidence.notary import Notary, config_sha256
from agent.frame_step import FrameStep
from agent.health import Health
from agent.loan import LoanBook
from agent.loop import FrameLoop
from agent.moment import Timeline
from agent.path_watch import PathWatch
from agent.privacy import PrivacyFilter
from agent.reactions import Reactions
from agent.recovery import recover
from agent.schedule import Schedule
from agent.sensors import AlarmInputs
from agent.service import Service
from agent.signalling import Signaller
from agent.storage.outbox import Outbox
from agent.storage.recorder import Recorder
from agent.storage_watch import StorageWatch
from agent.supervisor import FrameMark, Supervisor
from agent.uplink import homeassistant
from agent.uplink.messages import Identity
from agent.uplink.publisher import Publisher
from common.clock import Clock
from drivers.camera.base import Camera, Frame
from drivers.camera.watchdog import CameraWatchdog
from drivers.gpio import make_gpio
from drivers.gpio.simulated import sidecar_script

log = logging.getLogger(__name__)

STOPPING_DRAIN_S = 10.0  # on a stop request: what may still go out quickly; the rest stays in the outbox


@dataclass
class RunSummary:
    frames: int = 0
    alarms: int = 0
    events_published: Sequence[dict] = field(default_factory=list)
    outbox_path: Path | None = None
    outbox_depth: int = 0
    delivered: bool = False


#: OpenCV worker threads, set once as a run starts (issue 12). One: the loop's OpenCV work is small per call (the
#: downscale, detection on a 320-wide image, a pre-roll JPEG), where splitting rows over a pool costs about what it
#: saves, while the other cores belong to the clip's encoder thread, the uplink and the replay decoder; each pool
#: thread would also hold its own stack and malloc arena, against the RSS budget.
OPENCV_THREADS = 1

#: prctl(PR_SET_THP_DISABLE): no transparent huge pages for this process. x264 asks for them (madvise) on each of its
#: buffers of 1.75 MiB or more, so each is faulted in 2 MiB at a time whatever it touches: +2.5 MiB RSS for a 720p
#: encoder on a kernel with THP in "madvise" mode, the clip's frames never needing the TLB saving (issue 12).
PR_SET_THP_DISABLE = 41


def refuse_huge_pages() -> None:
    """Linux only; elsewhere, or if refused, the process keeps the kernel's default."""
    try:
        import ctypes

        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0:
            log.debug("transparent huge pages stay on: errno %d", ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        log.debug("transparent huge pages stay on: %s", exc)


class Agent:
    """Wires camera -> analyzer -> reactions (recorder, outbox) -> uplink for one run."""

    #: the store-and-forward outbox a run uses; the fault suite's self-test (tests/faults) runs a broken one
    outbox_type: type[Outbox] = Outbox

    def __init__(self, config: AgentConfig, camera: Camera, clock: Clock, *, upload: bool = True,
                 events_out: IO[str] | None = None, on_frame: Callable[[Frame], None] | None = None,
                 drain_timeout_s: float = 30.0, service: Service | None = None) -> None:
        self.config = config
        self.camera = camera
        self.clock = clock
        self.upload = upload
        self.events_out = events_out
        self.on_frame = on_frame
        self.viewers: list[Callable[[Frame, object], None]] = []  # given (frame, analysis); web/live.py
        self.reactions_walk_test: Callable[[], bool] = lambda: False  # the commissioning page's walk test
        self.drain_timeout_s = drain_timeout_s
        self.service = service or Service.from_environment(clock)  # systemd notify, when run under it
        self.identity = Identity(device_id=config.device_id, site_ref=config.site_ref)
        self.summary = RunSummary()
        self.uplink = None
        self.arc: ArcLinks | None = None
        self.privacy = PrivacyFilter(config.detection.zones)
        self.timeline = Timeline(clock, camera.live)
        self.mark = FrameMark()
        # one lock for "the unit's state": the frame loop takes it per frame, the supervisor per pass
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._commands: queue.SimpleQueue[Received] = queue.SimpleQueue()  # from the uplink, before control exists
        self._supervising = False

    def stop(self) -> None:
        """Ask the run to end (from a signal handler or another thread): the loop stops after this frame."""
        self._stop.set()
        self.service.stopping()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # lifecycle: start in order, stop in reverse --------------------------------------------------------------
    def run(self) -> RunSummary:
        cv2.setNumThreads(OPENCV_THREADS)
        refuse_huge_pages()
        with contextlib.ExitStack() as stack:
            self._open_storage(stack)
            self._register_arc()
            recover(self.outbox, self.publisher, self.identity, self.clock, self.notary)
            self._start_uplink(stack)
            self._open_gpio(stack)
            self._build_unit()
            stack.callback(self.arc.stop)
            self.arc.start()
            self._watch_mqtt_path()
            stack.callback(self.supervisor.stop)
            self._frame_loop().run()  # starts the supervisor once the camera has opened or failed (_supervise)
            self._drain()
        return self.summary

    def _open_storage(self, stack: contextlib.ExitStack) -> None:
        settings = self.config.outbox
        self.outbox = self.outbox_type(self.config.data_dir, settings.max_bytes, self.clock,
                                       min(settings.reserve_bytes, settings.max_bytes // 8))
        stack.callback(self.outbox.close)
        self.summary.outbox_path = self.config.data_dir
        key = UnitKey.load_or_create(self.config.data_dir)
        self.notary = Notary(key, AuditLog(self.config.data_dir, key, self.clock), self.identity,
                             config_sha256(self.config.model_dump_json()), self.clock)
        self.notary.started()
        stack.callback(lambda: self.notary.stopped("stop requested" if self.stopping else "source ended"))
        self.publisher = Publisher(self.outbox, self.config.broker.chunk_bytes, self.events_out, self._notify,
                                   self.notary, key)
        self.summary.events_published = self.publisher.published

    def _start_uplink(self, stack: contextlib.ExitStack) -> None:
        if not self.upload:
            return
        from agent.uplink.client import Uplink

        self.uplink = Uplink(self.config.broker, self.config.topic_root, self.config.device_id, self.outbox,
                             self.clock, __version__, key=self.publisher.key)
        self.uplink.on_command = self.submit_command
        self.service.link = lambda: "up" if self.uplink.connected else "down"
        self.uplink.start()
        stack.callback(self.uplink.stop)
        homeassistant.announce(self.uplink, self.config)   # with discovery off, it clears what was announced

    def _watch_mqtt_path(self) -> None:
        """MQTT lost for twice its keepalive: the ARC hears it over DC-09 (YC), and again when it is back (YK)."""
        if self.uplink is not None and self.config.arc.dc09.enabled:
            uplink = self.uplink
            self.supervisor.mqtt_watch = PathWatch(lambda: uplink.connected, 2.0 * self.config.broker.keepalive_s)

    def _register_arc(self) -> None:
        """The alarm receiving centre's links (DC-09, email) read the outbox beside the MQTT uplink; registered
        before recovery, so the honest end of an interrupted alarm reaches the ARC too. They start once the
        reactions that report their faults exist."""
        self.arc = ArcLinks(self.config.arc, self.outbox, self.clock, self.identity.model_dump(),
                            on_fault=lambda report: self.reactions.arc_path(report))  # reactions come later

    def _open_gpio(self, stack: contextlib.ExitStack) -> None:
        settings = self.config.gpio
        script = None
        if settings.backend == "simulated" and settings.script is None and self.config.camera.backend == "replay":
            script = sidecar_script(self.config.camera.source)  # a replay carries its PIR activity beside it
        self.gpio = make_gpio(settings, clock=self.clock, script=script)
        self.gpio.open()
        stack.callback(self.gpio.close)
        # outputs reach their safe state in _loop's finally (on the frame timeline) and again in gpio.close()
        self.signaller = Signaller(self.config.signalling, self.gpio, self.clock)

    def _build_unit(self) -> None:
        """The parts that act on frames: analyzer, recorder, reactions, control, watchdog and supervisor."""
        config = self.config
        self.health = Health(self.clock, config.data_dir)
        self.analyzer = Analyzer(config, AlarmInputs(self.gpio, config.fusion))
        self.recorder = Recorder(config.recorder, self.outbox.media_dir, self.camera.fps, self.camera,
                                 allow_hardware=not self.privacy.active)
        self.recorder.check()
        self.loan = LoanBook(config.loan, config.data_dir)
        self.reactions = Reactions(self.identity, self.publisher, self.outbox, self.recorder, self.signaller,
                                   self._alarm_raised, self.notary,
                                   config.events.update_interval_s)
        self.reactions.in_term = self.loan.in_term
        self.reactions.walk_test = lambda: self.reactions_walk_test()
        self.control = Control(self.identity, config.events.armed, Schedule(config.schedule), self.analyzer,
                               self.signaller, self.reactions, self.publisher, self.clock, self._commands,
                               config.commands, config.data_dir, self.loan)
        self.watchdog = CameraWatchdog(config.camera_watchdog, self.clock)
        self.camera.on_error = self._camera_read_error
        self.supervisor = Supervisor(
            identity=self.identity, clock=self.clock, lock=self._lock, mark=self.mark, timeline=self.timeline,
            watchdog=self.watchdog, analyzer=self.analyzer, control=self.control, signaller=self.signaller,
            reactions=self.reactions, publisher=self.publisher, outbox=self.outbox, health=self.health,
            heartbeat_interval_s=config.heartbeat.interval_s, audit_head=lambda: self.notary.head,
            service=self.service, storage=StorageWatch(self.outbox, self.reactions, self.notary, self.clock,
                                                       config.outbox.retention_days))

    def _drain(self) -> None:
        self.summary.outbox_depth = self.outbox.depth()
        if self.uplink is None or not self.uplink.connected:
            return
        # asked to stop (SIGTERM): don't outlast the service manager; the outbox keeps the rest for later
        timeout = min(self.drain_timeout_s, STOPPING_DRAIN_S) if self.stopping else self.drain_timeout_s
        self.summary.delivered = self.uplink.wait_drained(timeout)
        self.summary.outbox_depth = self.outbox.depth()

    # the frame loop ------------------------------------------------------------------------------------------
    def _frame_loop(self) -> FrameLoop:
        step = FrameStep(self.clock, self.timeline, self.mark, self.watchdog, self.control, self.analyzer,
                         self.privacy, self.reactions, self.signaller, self.health, self.service,
                         self._observers())
        return FrameLoop(self.camera, self._stop, self._lock, self.mark, opened=self._camera_opened,
                         failed=self._camera_failed, process=step, finish=self._finish)

    def _observers(self) -> list:
        """What watches each frame once the unit has acted on it (tests' on_frame, the commissioning page, HA)."""
        observers = [self._count]
        if self.on_frame is not None:
            observers.append(lambda frame, analysis, on_frame=self.on_frame: on_frame(frame))
        observers.append(lambda frame, analysis: [viewer(frame, analysis) for viewer in self.viewers])
        if self.uplink is not None and self.config.homeassistant.enabled:
            observers.append(homeassistant.snapshot_observer(self.uplink, self.config))
        return observers

    def _count(self, frame: Frame, analysis) -> None:
        self.summary.frames += 1

    def _finish(self) -> None:
        """End an open alarm and put the outputs in their safe state, on the last frame's timeline."""
        with self._lock:
            if self.mark.ts is None:
                return
            moment = self.timeline.at(self.mark.ts, self.mark.index)
            for event in self.analyzer.finish(moment.ts, moment.frame):
                self.reactions.handle(event, moment)
            self.signaller.close(moment.ts)

    def _camera_opened(self) -> None:
        self.recorder.fps = self.camera.fps  # a recording's real rate is known once it is open
        self._supervise()

    def _camera_read_error(self, message: str) -> None:
        """A camera that reconnects by itself (OpenCV/RTSP) reports each failed read here."""
        log.warning("camera: %s", message)
        with self._lock:
            self.reactions.camera_events(self.watchdog.error(message))

    def _camera_failed(self, message: str) -> None:
        """A live camera failed: report it and keep everything else running (the loop retries it)."""
        with self._lock:
            self.reactions.camera_events(self.watchdog.error(message))
        self._supervise()  # heartbeats now say the camera failed

    def _supervise(self) -> None:
        """Start heartbeats and stall checks once the camera's state is known: a heartbeat sent before the camera
        opened would claim a camera that never delivered a frame was fine."""
        if not self._supervising:
            self._supervising = True
            self.supervisor.start()

    # links to the outside ------------------------------------------------------------------------------------
    def submit_command(self, received: Received) -> None:
        """A command from the network thread; control applies it between frames."""
        self._commands.put(received)

    def _alarm_raised(self, event_id: str) -> None:
        self.health.last_event_id = event_id
        self.service.alarm_raised()
        self.summary.alarms += 1

    def _notify(self) -> None:
        if self.uplink is not None:
            self.uplink.notify()
        if self.arc is not None:
            self.arc.notify()
