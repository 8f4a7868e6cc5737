"""Analysis of one frame: detection (on the panorama strip when configured), sensor fusion, the event engine.

This is what `eval` runs, and what the agent's loop runs before it records and publishes anything. The analyzer is
the one way into the event engine: alarm start/end events leave it carrying who confirmed them, and `status()`
is the snapshot the heartbeat reads, so nothing downstream reaches into the engine or the fusion stage.

With detection.person_check, the analyzer also looks at the full-size frame (agent/person_verify.py): the detector
then always lists the objects it classed as animals, some of them are found to be people, and what is left is
passed on only with detection.animals = "report".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from agent.config import AgentConfig
from agent.events import AlarmEnded, AlarmStarted, EngineEvent, EventEngine, Phase
from agent.person_verify import PersonVerifier
from agent.sensors import AlarmInputs, FrameInputs
from drivers.camera.base import Frame
from models.motion import MotionDetector, MotionResult, MotionSettings
from models.panorama import Location, PanoramaView


@dataclass(frozen=True, slots=True)
class Analysis:
    result: MotionResult
    events: list[EngineEvent]
    inputs: FrameInputs | None = None
    locations: tuple[Location, ...] = ()


@dataclass(frozen=True, slots=True)
class AnalyzerStatus:
    """What the heartbeat reports of detection and inputs, read in one go."""

    armed: bool
    phase: Phase
    active_event_id: str | None
    tamper: str | None
    inputs: dict | None          # current GPIO input states (None without an input stage)
    detector_faults: list[str]   # detectors currently suspected faulty


def motion_zones(result: MotionResult) -> list[str | None]:
    """Zones with video motion on this frame; None stands for the whole image (no zones configured)."""
    if not result.motion:
        return []
    return [box.zone or None for box in result.boxes] or [None]


class Analyzer:
    """Detection (on the panorama strip when configured), sensor fusion and the event engine."""

    def __init__(self, config: AgentConfig, inputs: AlarmInputs | None = None) -> None:
        self.view = PanoramaView(config.panorama) if config.panorama.enabled else None
        # multi: the detection image holds the cameras side by side, in this order
        self.camera_names = [view.name for view in config.panorama.cameras] if config.panorama.kind == "multi" else []
        self.set_detection(config.detection)
        self.engine = EventEngine(config.events, post_roll_s=config.recorder.post_roll_s)
        self.inputs = inputs

    def set_detection(self, settings: MotionSettings) -> None:
        """A new detector for these settings (it learns the background afresh), and the person check they ask for.
        The check needs boxes in the recorded frame's geometry, so not on a panorama strip (a fisheye's people are
        neither upright nor undistorted there)."""
        self.settings = settings
        self.verifier = PersonVerifier() if settings.person_check and self.view is None else None
        # the verifier decides about animal-shaped objects first, so the detector always lists them
        listed = settings.model_copy(update={"animals": "report"}) if self.verifier is not None else settings
        self.detector = MotionDetector(listed)

    def process(self, frame: Frame) -> Analysis:
        luma = self.view.unwrap(self._views_of(frame.luma)) if self.view is not None else frame.luma
        result = self.detector.process(luma, frame.ts)
        locations: tuple[Location, ...] = ()
        if self.view is not None and result.boxes:
            locations = tuple(self.view.locate(result.boxes))
            result = dataclasses.replace(result, boxes=self._source_boxes(locations, frame.luma.shape[1]))
        if self.verifier is not None:
            result = self.verifier.frame(result, frame.image, frame.luma.shape, frame.ts)
            if self.settings.animals == "ignore" and result.animals:
                result = dataclasses.replace(result, animals=())
        fused = self.inputs.frame(frame.ts, result, motion_zones(result)) if self.inputs is not None else None
        decided = fused.result if fused is not None else result
        events = self._confirmed(self.engine.update(frame.ts, frame.index, decided))
        if self.verifier is not None:
            events, decided = self._classed(events, decided, frame)
        return Analysis(decided, events, fused, locations)

    def set_armed(self, armed: bool, ts: float, frame: int | None) -> list[EngineEvent]:
        """Arm or disarm; disarming ends an active alarm (returned, with who confirmed it)."""
        return self._confirmed(self.engine.set_armed(armed, ts, frame))

    def finish(self, ts: float, frame: int | None) -> list[EngineEvent]:
        """End any active alarm: the agent is stopping or the recording ended."""
        return self._confirmed(self.engine.finish(ts, frame))

    def status(self) -> AnalyzerStatus:
        inputs = self.inputs
        return AnalyzerStatus(
            armed=bool(self.engine.armed), phase=self.engine.phase, active_event_id=self.engine.active_event_id,
            tamper=self.engine.tampered, inputs=inputs.sensors.state() if inputs is not None else None,
            detector_faults=[report.detector for report in inputs.fusion.active_faults()] if inputs else [])

    def _confirmed(self, events: list[EngineEvent]) -> list[EngineEvent]:
        """Alarm starts and ends carry the technologies that confirmed them (video alone without inputs)."""
        out: list[EngineEvent] = []
        for event in events:
            if isinstance(event, AlarmStarted):
                sources = self.inputs.alarm_started() if self.inputs is not None else ["video"]
                event = dataclasses.replace(event, confirmed_by=tuple(sources))
            elif isinstance(event, AlarmEnded):
                sources = self.inputs.alarm_ended() if self.inputs is not None else ["video"]
                event = dataclasses.replace(event, confirmed_by=tuple(sources))
            out.append(event)
        return out

    def _classed(self, events: list[EngineEvent], decided: MotionResult,
                 frame: Frame) -> tuple[list[EngineEvent], MotionResult]:
        """An alarm starting on this frame carries its class: 'person' once HOG confirms its largest object (the
        frame's result shows the same labels)."""
        out: list[EngineEvent] = []
        for event in events:
            if isinstance(event, AlarmStarted) and event.boxes:
                boxes = self.verifier.alarm_boxes(event.boxes, frame.image, frame.luma.shape, frame.ts)
                if boxes != event.boxes:
                    if decided.boxes == event.boxes:
                        decided = dataclasses.replace(decided, boxes=boxes)
                    event = dataclasses.replace(event, boxes=boxes)
            out.append(event)
        return out, decided

    def _views_of(self, luma: np.ndarray) -> np.ndarray | list[np.ndarray]:
        return np.hsplit(luma, len(self.camera_names)) if self.camera_names else luma

    def _source_boxes(self, locations: tuple[Location, ...], luma_width: int) -> tuple:
        """Boxes in the detection image; for N cameras side by side, shifted into their camera's part."""
        boxes = PanoramaView.source_boxes(locations)
        if not self.camera_names:
            return boxes
        part = luma_width // len(self.camera_names)
        return tuple(dataclasses.replace(box, x=box.x + part * self.camera_names.index(location.camera))
                     for box, location in zip(boxes, locations, strict=True))
