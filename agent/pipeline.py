"""The loop: pull frames, run detection, feed the event engine, and act on its events.

`Analyzer` is detection + event engine only (what `eval` runs); `Agent` adds the recorder, outbox, uplink and
heartbeat (what `run` and `replay` run). Both are the same for a live camera and a recording.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

from agent import __version__
from agent.clock import Clock
from agent.config import AgentConfig
from agent.events import AlarmEnded, AlarmStarted, EngineEvent, EventEngine, new_event_id
from agent.health import Health
from agent import messages
from agent.outbox import Outbox
from agent.recorder import MediaFile, Recorder
from agent.schedule import Schedule
from agent.sensors import AlarmInputs, FrameInputs, fault_payload
from agent.signalling import Signaller
from drivers.camera.base import Camera, Frame
from drivers.gpio import make_gpio
from drivers.gpio.simulated import sidecar_script
from models.motion import MotionDetector, MotionResult

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Analysis:
    result: MotionResult
    events: list[EngineEvent]
    inputs: FrameInputs | None = None


class Analyzer:
    """Detection, sensor fusion (when GPIO inputs are given) and the event engine: frames in, events out."""

    def __init__(self, config: AgentConfig, inputs: AlarmInputs | None = None) -> None:
        self.detector = MotionDetector(config.detection)
        self.engine = EventEngine(config.events, post_roll_s=config.recorder.post_roll_s)
        self.inputs = inputs

    def process(self, frame: Frame) -> Analysis:
        result = self.detector.process(frame.luma)
        fused = self.inputs.frame(frame.ts, result) if self.inputs is not None else None
        decided = fused.result if fused is not None else result
        return Analysis(decided, self.engine.update(frame.ts, frame.index, decided), fused)

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
        self._snapshots: dict[str, MediaFile] = {}
        self._started_wall: dict[str, float] = {}
        self._first_frame_ts: float | None = None
        self._wall_at_first_frame = 0.0
        self._next_heartbeat = 0.0
        self.uplink = None

    # lifecycle ---------------------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        with contextlib.ExitStack() as stack:
            self.outbox = Outbox(self.config.data_dir, self.config.outbox.max_bytes, self.clock)
            stack.callback(self.outbox.close)
            self.summary.outbox_path = self.config.data_dir
            self._recover()
            self.uplink = self._start_uplink(stack)
            self.health = Health(self.clock, self.config.data_dir)
            self._start_gpio(stack)
            self.analyzer = Analyzer(self.config, AlarmInputs(self.gpio, self.config.fusion))
            self.recorder = Recorder(self.config.recorder, self.outbox.media_dir, self.camera.fps)
            self.camera.open()
            stack.callback(self.camera.close)
            self._loop()
            self._drain()
        return self.summary

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

    def _start_uplink(self, stack: contextlib.ExitStack):
        if not self.upload:
            return None
        from agent.uplink import Uplink

        uplink = Uplink(self.config.broker, self.config.topic_root, self.config.device_id, self.outbox,
                        self.clock, __version__)
        uplink.start()
        stack.callback(uplink.stop)
        return uplink

    def _recover(self) -> None:
        for repair in self.outbox.recover():
            log.warning("outbox repaired at start-up: %s", repair)
        for start_payload in self.outbox.open_alarms():
            payload = messages.incomplete_end(self.identity, self.outbox.next_seq(), start_payload, self.clock.wall())
            log.warning("alarm %s was open when the agent last stopped; sending an incomplete end",
                        start_payload["event_id"])
            self._publish_event(payload)
            self.outbox.close_alarm(start_payload["event_id"])

    def _loop(self) -> None:
        frame = None
        try:
            for frame in self.camera.frames():
                self._process(frame)
                if self.stop_event.is_set():
                    break
        finally:
            if frame is not None:
                for event in self.analyzer.finish(frame):
                    self._handle(event, frame)
                self.signaller.close(frame.ts)

    def _drain(self) -> None:
        self.summary.outbox_depth = self.outbox.depth()
        if self.uplink is None:
            return
        if self.uplink.connected:
            self.summary.delivered = self.uplink.wait_drained(self.drain_timeout_s)
            self.summary.outbox_depth = self.outbox.depth()

    # per frame ---------------------------------------------------------------------------------------------
    def _process(self, frame: Frame) -> None:
        if self._first_frame_ts is None:
            self._first_frame_ts, self._wall_at_first_frame = frame.ts, self.clock.wall()
        self._follow_schedule(frame)
        analysis = self.analyzer.process(frame)
        if not any(isinstance(event, AlarmStarted) for event in analysis.events):
            self.recorder.push(frame)
        if analysis.inputs is not None:
            self._publish_inputs(analysis.inputs, frame)
        for event in analysis.events:
            self._handle(event, frame)
        self.signaller.tick(frame.ts)
        self.health.frame_done()
        self.summary.frames += 1
        self._maybe_heartbeat()
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
            self._handle(event, frame)
        if not armed:
            self.signaller.silence(frame.ts)
        self._publish_unit_event({"kind": "armed", "armed": armed, "source": "schedule"}, frame)

    def _publish_inputs(self, inputs: FrameInputs, frame: Frame) -> None:
        for sensor_event in inputs.events:
            self._publish_unit_event(sensor_event.payload(), frame)
        for fault in inputs.faults:
            self._publish_unit_event(fault_payload(fault), frame)

    def _publish_unit_event(self, body: dict, frame: Frame) -> None:
        payload = messages.unit_event(self.identity, self.outbox.next_seq(), new_event_id(), body,
                                      self._wall(frame), frame.index)
        self._publish_event(payload)

    def _wall(self, frame: Frame) -> float:
        return self._wall_at_first_frame + (frame.ts - self._first_frame_ts)

    def _handle(self, event: EngineEvent, frame: Frame) -> None:
        if isinstance(event, AlarmStarted):
            self._alarm_started(event, frame)
        elif isinstance(event, AlarmEnded):
            self._alarm_ended(event, frame)

    def _alarm_started(self, event: AlarmStarted, frame: Frame) -> None:
        scale = frame.image.shape[1] / frame.luma.shape[1]
        image_size = (frame.image.shape[1], frame.image.shape[0])
        payload = messages.alarm_start(self.identity, self.outbox.next_seq(), event, self._wall(frame), scale,
                                       image_size)
        payload["confirmed_by"] = self.analyzer.inputs.alarm_started()
        self.signaller.alarm_started(frame.ts)
        self.outbox.open_alarm(event.event_id, payload)
        self._publish_event(payload)  # the start goes out before any media
        self._started_wall[event.event_id] = self._wall(frame)
        snapshot = self.recorder.start(event.event_id, frame, event.boxes)
        self._snapshots[event.event_id] = snapshot
        self._publish_media(event.event_id, snapshot)
        self.health.last_event_id = event.event_id
        self.summary.alarms += 1

    def _alarm_ended(self, event: AlarmEnded, frame: Frame) -> None:
        clip = self.recorder.finish()
        snapshot = self._snapshots.pop(event.event_id, None)
        duration = self._wall(frame) - self._started_wall.pop(event.event_id, self._wall(frame))
        payload = messages.alarm_end(self.identity, self.outbox.next_seq(), event, self._wall(frame), duration,
                                     clip, snapshot)
        payload["confirmed_by"] = self.analyzer.inputs.alarm_ended()
        self.signaller.alarm_ended(frame.ts)
        self._publish_event(payload)
        self._publish_media(event.event_id, clip)
        self.outbox.close_alarm(event.event_id)

    def _publish_event(self, payload: dict) -> None:
        self.outbox.put_message("event", payload, kind="event")
        self.summary.events_published.append(payload)
        if self.events_out is not None:
            self.events_out.write(json.dumps(payload, sort_keys=True) + "\n")
            self.events_out.flush()
        self._notify()

    def _publish_media(self, event_id: str, media: MediaFile) -> None:
        self.outbox.put_media(event_id, media.name, media.path, media.content_type, self.config.broker.chunk_bytes,
                              sha256=media.sha256)
        self._notify()

    def _notify(self) -> None:
        if self.uplink is not None:
            self.uplink.notify()

    def _maybe_heartbeat(self) -> None:
        now = self.clock.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.config.heartbeat.interval_s
        payload = self.health.heartbeat(
            self.identity, bool(self.analyzer.engine.armed), self.outbox.depth(), self.outbox.size_bytes(),
            inputs=self.analyzer.inputs.sensors.state(),
            signalling={"mode": self.signaller.mode, "active": self.signaller.active},
            detector_faults=[report.detector for report in self.analyzer.inputs.fusion.active_faults()])
        self.outbox.put_message("heartbeat", payload, kind="heartbeat")
        self._notify()
