"""The loop: pull frames, analyse them (agent/analyzer.py), and act on the events: record, publish, signal.

`Agent` is what `run` and `replay` run: the analyzer plus the recorder, outbox, uplink, signalling, camera
watchdog and heartbeat. It is the same for a live camera and a recording.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Sequence

from agent import __version__
from agent.analyzer import Analysis, Analyzer
from agent.commands import Arm, CommandError, Disarm, SetMode, Silence, parse_command, request_id
from agent.config import AgentConfig
from agent.events import (
    AlarmEnded,
    AlarmStarted,
    EngineEvent,
    SceneChanged,
    TamperCleared,
    TamperRaised,
    new_event_id,
)
from agent.health import Health
from agent.privacy import PrivacyFilter
from agent.schedule import Schedule
from agent.sensors import AlarmInputs, FrameInputs, fault_payload
from agent.signalling import Signaller
from agent.storage.outbox import Outbox
from agent.storage.recorder import CLIP_CONTENT_TYPES, MediaFile, Recorder, check_encoder
from agent.uplink import messages
from agent.uplink.publisher import Publisher
from common.clock import Clock, iso_utc
from common.errors import AgentError, HardwareError, SourceError, StorageError
from drivers.camera.base import Camera, Frame
from drivers.camera.watchdog import CameraFault, CameraRestored, CameraWatchdog
from drivers.gpio import make_gpio
from drivers.gpio.simulated import sidecar_script
from models.panorama import alarm_fields

log = logging.getLogger(__name__)

SUPERVISOR_PERIOD_S = 1.0
CAMERA_RETRY_MAX_S = 60.0
STOPPING_DRAIN_S = 10.0  # on a stop request: what may still go out quickly; the rest stays in the outbox


class _CameraLost(AgentError):
    """The camera failed while opening or delivering frames (not while the agent processed a frame)."""

    def __init__(self, error: AgentError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class RunSummary:
    frames: int = 0
    alarms: int = 0
    events_published: Sequence[dict] = field(default_factory=list)
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
        # one lock for "the unit's state": the frame loop takes it per frame, the supervisor per pass
        self._lock = threading.RLock()
        self._streaming = False
        self._last_frame_mono = 0.0
        self._camera_attempt = 0

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
            check_encoder(self.config.recorder)
            self.recorder = Recorder(self.config.recorder, self.outbox.media_dir, self.camera.fps, self.camera,
                                     allow_hardware=not self.privacy.active)
            self.watchdog = CameraWatchdog(self.config.camera_watchdog, self.clock)
            self.camera.on_error = self._camera_read_error
            self._start_supervisor(stack)
            self._loop()
            self._drain()
        return self.summary

    def _start_uplink(self, stack: contextlib.ExitStack):
        if not self.upload:
            return None
        from agent.uplink.client import Uplink

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
        # outputs reach their safe state in _loop's finally (on the frame timeline) and again in gpio.close()
        self.signaller = Signaller(self.config.signalling, self.gpio, self.clock)
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
            clip = self._finished_unqueued_clip(start_payload["event_id"])
            self.publisher.event(lambda seq, start=start_payload, clip=clip: messages.incomplete_end(
                self.identity, seq, start, self.clock.wall(), clip))
            self.outbox.close_alarm(start_payload["event_id"])

    def _finished_unqueued_clip(self, event_id: str) -> MediaFile | None:
        """A clip finished (fsynced, renamed) but not yet queued when the agent was killed: queue it now."""
        for path in sorted((self.outbox.media_dir / event_id).glob("clip.*")):
            if path.suffix == ".part" or self.outbox.is_queued(path):
                continue
            manifest = self.outbox.put_media(event_id, path.name, path, CLIP_CONTENT_TYPES.get(
                path.suffix.lstrip("."), "application/octet-stream"), self.config.broker.chunk_bytes)
            log.warning("queued clip %s, finished just before the agent stopped", path)
            return MediaFile(path.name, path, manifest["total_bytes"], manifest["sha256"], manifest["content_type"])
        return None

    def _loop(self) -> None:
        try:
            while not self.stop_event.is_set():
                try:
                    self._stream()
                    if self.stop_event.is_set() or not self.camera.live:
                        return  # asked to stop, or the recording ended
                    raise _CameraLost(SourceError("the camera stopped delivering frames"))
                except _CameraLost as lost:
                    if not self.camera.live:
                        raise lost.error from None
                    self._camera_failed(str(lost))
        finally:
            with self._lock:
                frame = self._last_frame
                if frame is not None:
                    for event in self.analyzer.finish(frame):
                        self._handle(event, frame, None)
                    self.signaller.close(frame.ts)

    def _stream(self) -> None:
        """Frames until the source ends or a stop is asked; camera errors become _CameraLost, errors of the
        agent's own work on a frame are not mistaken for camera faults."""
        try:
            self.camera.open()
        except (SourceError, HardwareError) as exc:
            raise _CameraLost(exc) from None
        self.recorder.fps = self.camera.fps  # a recording's real rate is known once it is open
        self._streaming = True
        try:
            frames = iter(self.camera.frames())
            while not self.stop_event.is_set():
                try:
                    frame = next(frames)
                except StopIteration:
                    return
                except (SourceError, HardwareError) as exc:
                    raise _CameraLost(exc) from None
                self._process(frame)
                self._camera_attempt = 0
        finally:
            self._streaming = False
            self.camera.close()

    def _camera_read_error(self, message: str) -> None:
        """A camera that reconnects by itself (OpenCV/RTSP) reports each failed read here."""
        log.warning("camera: %s", message)
        with self._lock:
            self._publish_camera_events(self.watchdog.error(message))

    def _camera_failed(self, message: str) -> None:
        """A live camera failed: report it, keep everything else running, and retry with capped backoff."""
        log.error("camera: %s", message)
        with self._lock:
            self._publish_camera_events(self.watchdog.error(message))
        delay = min(CAMERA_RETRY_MAX_S, 2.0 ** self._camera_attempt)
        self._camera_attempt += 1
        self.stop_event.wait(delay)

    def _drain(self) -> None:
        self.summary.outbox_depth = self.outbox.depth()
        if self.uplink is None:
            return
        if self.uplink.connected:
            # asked to stop (SIGTERM): don't outlast the service manager; the outbox keeps the rest for later
            timeout = min(self.drain_timeout_s, STOPPING_DRAIN_S) if self.stop_event.is_set() else self.drain_timeout_s
            self.summary.delivered = self.uplink.wait_drained(timeout)
            self.summary.outbox_depth = self.outbox.depth()

    # beside the loop -----------------------------------------------------------------------------------------
    def _supervise(self, done: threading.Event) -> None:
        while True:
            try:
                with self._lock:
                    if self._streaming:
                        self._publish_camera_events(self.watchdog.tick())
                    self._while_no_frames()
                    self._maybe_heartbeat()
            except Exception:  # noqa: BLE001 - a dead supervisor would silently end heartbeats and stall checks
                log.exception("supervisor pass failed; the next pass runs in %.0f s", SUPERVISOR_PERIOD_S)
            if done.wait(SUPERVISOR_PERIOD_S):
                return

    def _while_no_frames(self) -> None:
        """With the camera stalled or down, outputs must still time out and commands still apply: run them on
        the frame timeline extrapolated from the last frame."""
        frame = self._last_frame
        idle = self.clock.monotonic() - self._last_frame_mono
        if frame is None or idle < SUPERVISOR_PERIOD_S:
            return
        now = dataclasses.replace(frame, ts=frame.ts + idle)
        self.signaller.tick(now.ts)
        self._apply_commands(now)

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
            except AgentError as exc:  # a refused command, or one that could not be carried out
                log.warning("command refused: %s", exc)
                result.update(id=request_id(payload), ok=False, reason=str(exc))
            self.publisher.command_result(result)

    def _execute(self, command, frame: Frame) -> str:
        if isinstance(command, (Arm, Disarm)):
            armed = isinstance(command, Arm)
            self._set_armed(armed, frame, "command")
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
        with self._lock:
            self._process_locked(frame)

    def _process_locked(self, frame: Frame) -> None:
        if self._first_frame_ts is None:
            self._first_frame_ts, self._wall_at_first_frame = frame.ts, self.clock.wall()
        self._last_frame = frame
        self._last_frame_mono = self.clock.monotonic()
        self._publish_camera_events(self.watchdog.frame_arrived(frame.ts))
        self._apply_commands(frame)
        self._follow_schedule(frame)
        analysis = self.analyzer.process(frame)
        if self.privacy.active:
            frame = dataclasses.replace(frame, image=self.privacy.apply(frame.image))
        if not any(isinstance(event, AlarmStarted) for event in analysis.events):
            self._record(frame)
        if analysis.inputs is not None:
            self._publish_inputs(analysis.inputs, frame)
        for event in analysis.events:
            self._handle(event, frame, analysis)
        self.signaller.tick(frame.ts)
        self.health.frame_done()
        self.summary.frames += 1
        if self.on_frame is not None:
            self.on_frame(frame)

    def _record(self, frame: Frame) -> None:
        try:
            self.recorder.push(frame)
        except StorageError as exc:
            recording = self.analyzer.engine.active_event_id if self.recorder.recording else None
            self.recorder.abandon()
            self._storage_failed(recording, exc, frame)

    def _storage_failed(self, event_id: str | None, error: StorageError, frame: Frame) -> None:
        """A clip or snapshot could not be written or queued: say so upstream and keep guarding the site."""
        log.error("storage: %s", error)
        self._publish_unit_event({"kind": "fault", "source": "storage", "message": str(error),
                                  "alarm_event_id": event_id}, self._wall(frame), frame.index)

    def _follow_schedule(self, frame: Frame) -> None:
        armed = self.schedule.change(self._wall(frame))
        if armed is None:
            return
        armed = armed and self.config.events.armed
        if armed != self.analyzer.engine.armed:
            self._set_armed(armed, frame, "schedule")

    def _set_armed(self, armed: bool, frame: Frame, source: str) -> None:
        """Arm or disarm (ending an active alarm and silencing outputs), and say so upstream."""
        for event in self.analyzer.engine.set_armed(armed, frame.ts, frame.index):
            self._handle(event, frame, None)
        if not armed:
            self.signaller.silence(frame.ts)
        self._publish_unit_event({"kind": "armed", "armed": armed, "source": source}, self._wall(frame),
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
        self.health.last_event_id = event.event_id
        self.summary.alarms += 1
        try:
            # the snapshot is queued before the clip starts, so a crash mid-clip cannot strand it unqueued
            snapshot = self.recorder.snapshot(event.event_id, frame, event.boxes)
            self._queue_media(event.event_id, snapshot, frame)
            self._snapshots[event.event_id] = snapshot
            self.recorder.start(event.event_id, frame)
        except StorageError as exc:
            self.recorder.abandon()
            self._storage_failed(event.event_id, exc, frame)

    def _alarm_ended(self, event: AlarmEnded, frame: Frame) -> None:
        try:
            clip = self._finish_clip(event.event_id, frame)
            snapshot = self._snapshots.pop(event.event_id, None)
            duration = self._wall(frame) - self._started_wall.pop(event.event_id, self._wall(frame))
            confirmed_by = self.analyzer.inputs.alarm_ended()
            self.publisher.event(lambda seq: {
                **messages.alarm_end(self.identity, seq, event, self._wall(frame), duration, clip, snapshot),
                "confirmed_by": confirmed_by})
            self.outbox.close_alarm(event.event_id)
        finally:
            self.signaller.alarm_ended(frame.ts)

    def _finish_clip(self, event_id: str, frame: Frame) -> MediaFile | None:
        """Close and queue the alarm's clip; None (and a storage fault) when it could not be kept."""
        if not self.recorder.recording:
            return None
        try:
            clip = self.recorder.finish()
            self._queue_media(event_id, clip, frame)
            return clip
        except StorageError as exc:
            self._storage_failed(event_id, exc, frame)
            return None

    def _queue_media(self, event_id: str, media: MediaFile, frame: Frame) -> None:
        """Queue a finished file; one the outbox cannot take is deleted, never left on disk unaccounted for."""
        try:
            self.publisher.media(event_id, media)
        except StorageError:
            media.path.unlink(missing_ok=True)
            raise

    def _notify(self) -> None:
        if self.uplink is not None:
            self.uplink.notify()
