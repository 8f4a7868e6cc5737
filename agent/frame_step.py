"""One frame through the unit, in order: time it, hear the camera and control, analyse, record, react, tick.

Observers (the run's progress bar, the commissioning page, Home Assistant's snapshot) come last and are handed the
frame and its analysis; they cannot change what the unit decided.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from agent.analyzer import Analysis, Analyzer
from agent.control import Control
from agent.events import AlarmStarted
from agent.health import Health
from agent.moment import Timeline
from agent.privacy import PrivacyFilter
from agent.reactions import Reactions
from agent.service import Service
from agent.signalling import Signaller
from agent.supervisor import FrameMark
from common.clock import Clock
from drivers.camera.base import Frame
from drivers.camera.watchdog import CameraWatchdog

Observer = Callable[[Frame, Analysis], None]


@dataclasses.dataclass
class FrameStep:
    clock: Clock
    timeline: Timeline
    mark: FrameMark
    watchdog: CameraWatchdog
    control: Control
    analyzer: Analyzer
    privacy: PrivacyFilter
    reactions: Reactions
    signaller: Signaller
    health: Health
    service: Service
    observers: list[Observer]

    def __call__(self, frame: Frame) -> None:
        moment = self.timeline.at(frame.ts, frame.index)
        self.mark.seen(frame.ts, frame.index, self.clock.monotonic())
        stepped = self.timeline.stepped()
        if stepped:
            self.reactions.clock_stepped(stepped, moment)
        self.reactions.camera_events(self.watchdog.frame_arrived(frame.ts))
        self.control.step(moment)
        analysis = self.analyzer.process(frame)
        if self.privacy.active:
            frame = dataclasses.replace(frame, image=self.privacy.apply(frame.image))
        if not any(isinstance(event, AlarmStarted) for event in analysis.events):
            self.reactions.record(frame, moment)  # on a start, the recorder takes this frame with the snapshot
        if analysis.inputs is not None:
            self.reactions.inputs(analysis.inputs, moment)
        for event in analysis.events:
            self.reactions.handle(event, moment, frame, analysis)
        self.reactions.update(moment, frame, analysis)  # a running alarm's objects, at most once a second
        self.signaller.tick(frame.ts)
        self.health.frame_done()
        self.service.frame_done()
        for observer in self.observers:
            observer(frame, analysis)
