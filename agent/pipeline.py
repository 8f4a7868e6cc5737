"""The loop: pull frames, run detection, feed the event engine, and act on its events.

`Analyzer` is detection + fusion + event engine only (what `eval` runs); `Agent` adds the recorder, outbox,
uplink, signalling, camera watchdog and heartbeat (what `run` and `replay` run). Both are the same for a live
camera and a recording.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

from agent import __version__, messages
from agent.clock import Clock, iso_utc
from agent.commands import Arm, CommandError, Disarm, SetMode, Silence, parse_command, request_id
from agent.config import AgentConfig
from agent.errors import HardwareError, SourceError
from agent.events import (
    AlarmEnded,
    AlarmStarted,
    EngineEvent,
    EventEngine,
    SceneChanged,
    TamperCleared,
    TamperRaised,
    new_event_id,
)
from agent.health import Health
from agent.outbox import Outbox
from agent.privacy import PrivacyFilter
from agent.publisher import Publisher
from agent.recorder import MediaFile, Recorder
from agent.schedule import Schedule
from agent.sensors import AlarmInputs, FrameInputs, fault_payload
from agent.signalling import Signaller
from drivers.camera.base import Camera, Frame
from drivers.camera.watchdog import CameraFault, CameraRestored, CameraWatchdog
from drivers.gpio import make_gpio
from drivers.gpio.simulated import sidecar_script
from models.motion import MotionDetector, MotionResult
from models.panorama import Location, PanoramaView, alarm_fields

log = logging.getLogger(__name__)

SUPERVISOR_PERIOD_S = 1.0
CAMERA_RETRY_MAX_S = 60.0


@dataclass(frozen=True, slots=True)
class Analysis:
    result: MotionResult
    events: list[EngineEvent]
    inputs: FrameInputs | None = None
    locations: tuple[Location, ...] = ()


class Analyzer:
    """Detection (on the panorama strip when configured), sensor fusion and the event engine."""

    def __init__(self, config: AgentConfig, inputs: AlarmInputs | None = None) -> None:
        self.view = PanoramaView(config.panorama) if config.panorama.enabled else None
        self.detector = MotionDetector(config.detection)
        self.engine = EventEngine(config.events, post_roll_s=config.recorder.post_roll_s)
        self.inputs = inputs

    def process(self, frame: Frame) -> Analysis:
        luma = self.view.unwrap(frame.luma) if self.view is not None else frame.luma
        result = self.detector.process(luma, frame.ts)
        locations: tuple[Location, ...] = ()
        if self.view is not None and result.boxes:
            locations = tuple(self.view.locate(result.boxes))
            result = dataclasses.replace(result, boxes=PanoramaView.source_boxes(locations))
        fused = self.inputs.frame(frame.ts, result) if self.inputs is not None else None
        decided = fused.result if fused is not None else result
        return Analysis(decided, self.engine.update(frame.ts, frame.index, decided), fused, locations)

    def finish(self, frame: Frame) -> list[EngineEvent]:
        return self.engine.finish(frame.ts, frame.index)


@dataclass
class RunSummary:
    frames: int = 0
    alarms: int = 0
    events_published: list[dict] = field(default_factory=list)
    outbox_path: Path | None = None
    outbox_depth: int = 0
    delivered: bool = False


class Agent:
    """Wires camera -> analyzer -> recorder/outbox -> uplink for one run."""

    def __init__(self, config: AgentConfig, camera: Camera, clock: Clock, *, upload: bool = True,
                 events_out: IO[str] | None = None, on_frame: Callable[[Frame], None] | None = None,
                 drain_timeout_s: float = 30.0) -> None:
        self.config = config
        self.camera = camera
        self.clock = clock
        self.upload = upload
        self.events_out = events_out
        self.on_frame = on_frame
        self.drain_timeout_s = drain_timeout_s
        self.stop_event = threading.Event()
        self.identity = {"device_id": config.device_id, "site_ref": config.site_ref}
        self.summary = RunSummary()
        self.uplink = None
        self.privacy = PrivacyFilter(config.detection.zones)
        self._snapshots: dict[str, MediaFile] = {}
        self._started_wall: dict[str, float] = {}
        self._first_frame_ts: float | None = None
        self._wall_at_first_frame = 0.0
        self._last_frame: Frame | None = None
        self._next_heartbeat = 0.0
        self._commands: queue.SimpleQueue[bytes] = queue.SimpleQueue()

    # lifecycle: start in order, stop in reverse (ExitStack), one stop signal (stop_event) ---------------------
    def run(self) -> RunSummary:
        with contextlib.ExitStack() as stack:
            self.outbox = Outbox(self.config.data_dir, self.config.outbox.max_bytes, self.clock)
            stack.callback(self.outbox.close)
            self.summary.outbox_path = self.config.data_dir
            self.publisher = Publisher(self.outbox, self.config.broker.chunk_bytes, self.events_out, self._notify)
            self.summary.events_published = self.publisher.published
            self._recover()
            self.uplink = self._start_uplink(stack)
            self.health = Health(self.clock, self.config.data_dir)
            self._start_gpio(stack)
            self.analyzer = Analyzer(self.config, AlarmInputs(self.gpio, self.config.fusion))
            self.recorder = Recorder(self.config.recorder, self.outbox.media_dir, self.camera.fps, self.camera,
                                     allow_hardware=not self.privacy.active)
            self.watchdog = CameraWatchdog(self.config.camera_watchdog, self.clock)
            self._start_supervisor(stack)
            self._loop()
            self._drain()
        return self.summary

    def _start_uplink(self, stack: contextlib.ExitStack):
        if not self.upload:
            return None
        from agent.uplink import Uplink

        uplink = Uplink(self.config.broker, self.config.topic_root, self.config.device_id, self.outbox,
                        self.clock, __version__)
        uplink.on_command = self.submit_command
        uplink.start()
        stack.callback(uplink.stop)
        return uplink

    def _start_gpio(self, stack: contextlib.ExitStack) -> None:
        settings = self.config.gpio
        script = None
        if settings.backend == "simulated" and settings.script is None and self.config.camera.backend == "replay":
            script = sidecar_script(self.config.camera.source)  # a replay carries its PIR activity beside it
        self.gpio = make_gpio(settings, clock=self.clock, script=script)
        self.gpio.open()
        stack.callback(self.gpio.close)
        self.signaller = Signaller(self.config.signalling, self.gpio, self.clock)
        stack.callback(self.signaller.close)  # runs before gpio.close: outputs reach their safe state first
        self.schedule = Schedule(self.config.schedule)

    def _start_supervisor(self, stack: contextlib.ExitStack) -> None:
        """Heartbeats and camera stall checks run beside the loop: a stalled camera blocks the loop, not them."""
        done = threading.Event()
        thread = threading.Thread(target=self._supervise, args=(done,), name="supervisor", daemon=True)
        thread.start()

        def stop_supervisor() -> None:
            done.set()
            thread.join(timeout=10)

        stack.callback(stop_supervisor)

    def _recover(self) -> None:
        for repair in self.outbox.recover():
            log.warning("outbox at start-up: %s", repair)
        for start_payload in self.outbox.open_alarms():
            log.warning("alarm %s was open when the agent last stopped; sending an incomplete end",
                        start_payload["event_id"])
            self.publisher.event(lambda seq, start=start_payload: messages.incomplete_end(
                self.identity, seq, start, self.clock.wall()))
            self.outbox.close_alarm(start_payload["event_id"])

    def _loop(self) -> None:
        attempt = 0
        try:
            while not self.stop_event.is_set():
                try:
                    self._stream()
                    if self.stop_event.is_set() or not self.camera.live:
                        return  # asked to stop, or the recording ended
                    raise SourceError("the camera stopped delivering frames")
                except (SourceError, HardwareError) as exc:
                    if not self.camera.live:
                        raise
                    self._camera_failed(str(exc), attempt)
                    attempt += 1
        finally:
            frame = self._last_frame
            if frame is not None:
                for event in self.analyzer.finish(frame):
                    self._handle(event, frame, None)
                self.signaller.close(frame.ts)

    def _stream(self) -> None:
        self.camera.open()
        try:
            for frame in self.camera.frames():
                self._process(frame)
                if self.stop_event.is_set():
                    return
        finally:
            self.camera.close()

    def _camera_failed(self, message: str, attempt: int) -> None:
        """A live camera failed: report it, keep everything else running, and retry with capped backoff."""
        log.error("camera: %s", message)
        self._publish_camera_events(self.watchdog.error(message))
        delay = min(CAMERA_RETRY_MAX_S, 2.0 ** attempt)
        self.stop_event.wait(delay)

    def _drain(self) -> None:
        self.summary.outbox_depth = self.outbox.depth()
        if self.uplink is None:
            return
        if self.uplink.connected:
            self.summary.delivered = self.uplink.wait_drained(self.drain_timeout_s)
            self.summary.outbox_depth = self.outbox.depth()

    # beside the loop -----------------------------------------------------------------------------------------
    def _supervise(self, done: threading.Event) -> None:
        while True:
            self._publish_camera_events(self.watchdog.tick())
            self._maybe_heartbeat()
            if done.wait(SUPERVISOR_PERIOD_S):
                return

    def _maybe_heartbeat(self) -> None:
        now = self.clock.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.config.heartbeat.interval_s
        inputs = self.analyzer.inputs
        self.publisher.heartbeat(self.health.heartbeat(
            self.identity, bool(self.analyzer.engine.armed), self.outbox.depth(), self.outbox.size_bytes(),
            camera=self.watchdog.status(), tamper=self.analyzer.engine.tampered,
            inputs=inputs.sensors.state(),
            signalling={"mode": self.signaller.mode, "active": self.signaller.active},
            detector_faults=[report.detector for report in inputs.fusion.active_faults()]))

    def _publish_camera_events(self, events: list[CameraFault | CameraRestored]) -> None:
        for event in events:
            if isinstance(event, CameraFault):
                body = {"kind": "fault", "source": "camera", "reason": event.reason, "message": event.message}
            else:
                body = {"kind": "restore", "source": "camera", "reason": event.reason,
                        "down_s": round(event.down_s, 1)}
            self._publish_unit_event(body, event.wall, None)

    # remote commands: received on the network thread, applied between frames ----------------------------------
    def submit_command(self, payload: bytes) -> None:
        self._commands.put(payload)

    def _apply_commands(self, frame: Frame) -> None:
        while True:
            try:
                payload = self._commands.get_nowait()
            except queue.Empty:
                return
            result = {**self.identity, "ts": iso_utc(self.clock.wall())}
            try:
                command = parse_command(payload)
                detail = self._execute(command, frame)
                result.update(id=command.id, cmd=command.cmd, ok=True, detail=detail)
            except CommandError as exc:
                log.warning("command refused: %s", exc)
                result.update(id=request_id(payload), ok=False, reason=str(exc))
            self.publisher.command_result(result)

    def _execute(self, command, frame: Frame) -> str:
        engine = self.analyzer.engine
        if isinstance(command, (Arm, Disarm)):
            armed = isinstance(command, Arm)
            for event in engine.set_armed(armed, frame.ts, frame.index):
                self._handle(event, frame, None)
            if not armed:
                self.signaller.silence(frame.ts)
            self._publish_unit_event({"kind": "armed", "armed": armed, "source": "command"}, self._wall(frame),
                                     frame.index)
            return "armed" if armed else "disarmed"
        if isinstance(command, SetMode):
            self.signaller.set_mode(command.mode, frame.ts)
            return f"mode {command.mode}"
        if isinstance(command, Silence):
            self.signaller.silence(frame.ts)
            return "outputs silenced"
        raise CommandError(f"command {command.cmd!r} is not supported by this agent")

    # per frame -----------------------------------------------------------------------------------------------
    def _process(self, frame: Frame) -> None:
        if self._first_frame_ts is None:
            self._first_frame_ts, self._wall_at_first_frame = frame.ts, self.clock.wall()
        self._last_frame = frame
        self._publish_camera_events(self.watchdog.frame_arrived(frame.ts))
        self._apply_commands(frame)
        self._follow_schedule(frame)
        analysis = self.analyzer.process(frame)
        if self.privacy.active:
            frame = dataclasses.replace(frame, image=self.privacy.apply(frame.image))
        if not any(isinstance(event, AlarmStarted) for event in analysis.events):
            self.recorder.push(frame)
        if analysis.inputs is not None:
            self._publish_inputs(analysis.inputs, frame)
        for event in analysis.events:
            self._handle(event, frame, analysis)
        self.signaller.tick(frame.ts)
        self.health.frame_done()
        self.summary.frames += 1
        if self.on_frame is not None:
            self.on_frame(frame)

    def _follow_schedule(self, frame: Frame) -> None:
        armed = self.schedule.change(self._wall(frame))
        if armed is None:
            return
        armed = armed and self.config.events.armed
        if armed == self.analyzer.engine.armed:
            return
        for event in self.analyzer.engine.set_armed(armed, frame.ts, frame.index):
            self._handle(event, frame, None)
        if not armed:
            self.signaller.silence(frame.ts)
        self._publish_unit_event({"kind": "armed", "armed": armed, "source": "schedule"}, self._wall(frame),
                                 frame.index)

    def _publish_inputs(self, inputs: FrameInputs, frame: Frame) -> None:
        for sensor_event in inputs.events:
            self._publish_unit_event(sensor_event.payload(), self._wall(frame), frame.index)
        for fault in inputs.faults:
            self._publish_unit_event(fault_payload(fault), self._wall(frame), frame.index)

    def _publish_unit_event(self, body: dict, wall: float, frame_index: int | None) -> None:
        event_id = new_event_id()
        self.publisher.event(lambda seq: messages.unit_event(self.identity, seq, event_id, body, wall, frame_index))

    def _wall(self, frame: Frame) -> float:
        """Wall time of a frame: replays and live cameras alike are timed from their first frame."""
        return self._wall_at_first_frame + (frame.ts - self._first_frame_ts)

    def _handle(self, event: EngineEvent, frame: Frame, analysis: Analysis | None) -> None:
        if isinstance(event, AlarmStarted):
            self._alarm_started(event, frame, analysis)
        elif isinstance(event, AlarmEnded):
            self._alarm_ended(event, frame)
        elif isinstance(event, TamperRaised):
            self._publish_unit_event({"kind": "tamper", "source": "video", "reason": event.reason},
                                     self._wall(frame), frame.index)
        elif isinstance(event, TamperCleared):
            self._publish_unit_event({"kind": "restore", "source": "video", "reason": event.reason,
                                      "down_s": round(event.duration_s, 1)}, self._wall(frame), frame.index)
        elif isinstance(event, SceneChanged):
            self._publish_unit_event({"kind": "scene_change", "source": "video"}, self._wall(frame), frame.index)

    def _alarm_started(self, event: AlarmStarted, frame: Frame, analysis: Analysis | None) -> None:
        scale = frame.image.shape[1] / frame.luma.shape[1]
        image_size = (frame.image.shape[1], frame.image.shape[0])
        confirmed_by = self.analyzer.inputs.alarm_started()
        where = alarm_fields(analysis.locations) if analysis is not None and analysis.locations else {}
        zone = next((box.zone for box in event.boxes if box.zone), None)

        def build(seq: int) -> dict:
            payload = messages.alarm_start(self.identity, seq, event, self._wall(frame), scale, image_size)
            return {**payload, "zone": zone, "confirmed_by": confirmed_by, **where}

        payload = self.publisher.event(build)  # the start goes out before any media
        self.outbox.open_alarm(event.event_id, payload)
        self.signaller.alarm_started(frame.ts)
        self._started_wall[event.event_id] = self._wall(frame)
        snapshot = self.recorder.start(event.event_id, frame, event.boxes)
        self._snapshots[event.event_id] = snapshot
        self.publisher.media(event.event_id, snapshot)
        self.health.last_event_id = event.event_id
        self.summary.alarms += 1

    def _alarm_ended(self, event: AlarmEnded, frame: Frame) -> None:
        clip = self.recorder.finish()
        snapshot = self._snapshots.pop(event.event_id, None)
        duration = self._wall(frame) - self._started_wall.pop(event.event_id, self._wall(frame))
        confirmed_by = self.analyzer.inputs.alarm_ended()
        self.publisher.event(lambda seq: {
            **messages.alarm_end(self.identity, seq, event, self._wall(frame), duration, clip, snapshot),
            "confirmed_by": confirmed_by})
        self.publisher.media(event.event_id, clip)
        self.outbox.close_alarm(event.event_id)
        self.signaller.alarm_ended(frame.ts)

    def _notify(self) -> None:
        if self.uplink is not None:
            self.uplink.notify()
