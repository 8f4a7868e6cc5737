"""Analysis of one frame: detection (on the panorama strip when configured), sensor fusion, the event engine.

This is what `eval` runs, and what the agent's loop runs before it records and publishes anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from agent.config import AgentConfig
from agent.events import EngineEvent, EventEngine
from agent.sensors import AlarmInputs, FrameInputs
from drivers.camera.base import Frame
from models.motion import MotionDetector, MotionResult
from models.panorama import Location, PanoramaView


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
        # multi: the detection image holds the cameras side by side, in this order
        self.camera_names = [view.name for view in config.panorama.cameras] if config.panorama.kind == "multi" else []
        self.detector = MotionDetector(config.detection)
        self.engine = EventEngine(config.events, post_roll_s=config.recorder.post_roll_s)
        self.inputs = inputs

    def process(self, frame: Frame) -> Analysis:
        luma = self.view.unwrap(self._views_of(frame.luma)) if self.view is not None else frame.luma
        result = self.detector.process(luma, frame.ts)
        locations: tuple[Location, ...] = ()
        if self.view is not None and result.boxes:
            locations = tuple(self.view.locate(result.boxes))
            result = dataclasses.replace(result, boxes=self._source_boxes(locations, frame.luma.shape[1]))
        fused = self.inputs.frame(frame.ts, result) if self.inputs is not None else None
        decided = fused.result if fused is not None else result
        return Analysis(decided, self.engine.update(frame.ts, frame.index, decided), fused, locations)

    def finish(self, frame: Frame) -> list[EngineEvent]:
        return self.engine.finish(frame.ts, frame.index)

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
