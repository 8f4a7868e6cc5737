"""The event engine: the only place that decides "this is an alarm".

idle -> alarm -> post-roll -> idle. Driven by frame time (an injected clock in effect), never by sleeping.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Callable

from agent.config import EventSettings
from common.hold import Hold
from models.motion import MotionResult


class Phase(enum.Enum):
    IDLE = "idle"
    ALARM = "alarm"
    POST_ROLL = "post_roll"


@dataclass(frozen=True, slots=True)
class AlarmStarted:
    event_id: str
    ts: float
    frame: int
    score: float
    boxes: tuple = ()
    confirmed_by: tuple[str, ...] = ()  # technologies that confirmed it ("video", "pir:<id>"), set by the analyzer


@dataclass(frozen=True, slots=True)
class MotionStopped:
    """The alarm's motion has paused for event_gap_s: post-roll begins (the alarm may still resume)."""

    event_id: str
    ts: float
    frame: int


@dataclass(frozen=True, slots=True)
class AlarmEnded:
    event_id: str
    ts: float
    frame: int
    started_frame: int
    peak_score: float
    reason: str  # "motion stopped" | "max length" | "disarmed" | "shutdown"
    confirmed_by: tuple[str, ...] = ()  # every technology that confirmed any frame of the alarm (analyzer)


@dataclass(frozen=True, slots=True)
class TamperRaised:
    """The camera looks covered, defocused or turned away, and has for tamper_hold_s (armed or not)."""

    ts: float
    frame: int
    reason: str


@dataclass(frozen=True, slots=True)
class TamperCleared:
    ts: float
    frame: int
    reason: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class SceneChanged:
    """The whole scene changed (lights, IR switch, exposure) and the background was re-learnt: not an intrusion."""

    ts: float
    frame: int


@dataclass(frozen=True, slots=True)
class AnimalSeen:
    """Objects classed as animals (detection.animals = "report"): reported, never an intrusion alarm."""

    ts: float
    frame: int
    boxes: tuple = ()


EngineEvent = AnimalSeen | AlarmStarted | MotionStopped | AlarmEnded | TamperRaised | TamperCleared | SceneChanged


def new_event_id() -> str:
    return uuid.uuid4().hex


@dataclass
class _ActiveAlarm:
    event_id: str
    started_ts: float
    started_frame: int
    last_motion_ts: float
    peak_score: float
    quiet_since: float | None = None


@dataclass
class EventEngine:
    """Turns per-frame motion decisions into alarm start/stop/end events."""

    settings: EventSettings
    post_roll_s: float
    new_id: Callable[[], str] = new_event_id
    armed: bool | None = None
    phase: Phase = field(default=Phase.IDLE, init=False)
    _streak: int = field(default=0, init=False)
    _streak_since: float = field(default=0.0, init=False)   # time of the streak's first frame
    _alarm: _ActiveAlarm | None = field(default=None, init=False)
    _tamper: Hold = field(init=False)
    _last_scene_change: float | None = field(default=None, init=False)
    _last_animal: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.armed is None:
            self.armed = self.settings.armed
        self._tamper = Hold(self.settings.tamper_hold_s)  # the one tamper debounce (the detector has none)

    @property
    def active_event_id(self) -> str | None:
        return self._alarm.event_id if self._alarm else None

    @property
    def tampered(self) -> str | None:
        return self._tamper.reason if self._tamper.active else None

    def update(self, ts: float, frame: int, result: MotionResult) -> list[EngineEvent]:
        events = self._conditions(ts, frame, result)
        self._streak = self._streak + 1 if result.motion else 0
        if self._streak == 1:
            self._streak_since = ts
        if self.phase is Phase.IDLE:
            return events + self._from_idle(ts, frame, result)
        return events + self._while_active(ts, frame, result)

    def _conditions(self, ts: float, frame: int, result: MotionResult) -> list[EngineEvent]:
        """Tamper and scene changes are reported whether armed or not."""
        events: list[EngineEvent] = []
        change = self._tamper.update(ts, result.tamper)
        if change == "raised":
            events.append(TamperRaised(ts, frame, self._tamper.reason))
        elif change == "cleared":
            events.append(TamperCleared(ts, frame, self._tamper.reason, ts - self._tamper.since))
        quiet = self._last_scene_change is None or ts - self._last_scene_change >= self.settings.scene_change_quiet_s
        if result.scene_change and quiet and not self._tamper.active:
            self._last_scene_change = ts
            events.append(SceneChanged(ts, frame))
        if result.animals and (self._last_animal is None or ts - self._last_animal >= self.settings.animal_quiet_s):
            self._last_animal = ts
            events.append(AnimalSeen(ts, frame, tuple(result.animals)))
        return events

    def _from_idle(self, ts: float, frame: int, result: MotionResult) -> list[EngineEvent]:
        if not self.armed or self._streak < self.settings.min_motion_frames:
            return []
        if self._tamper.active and ts - self._streak_since < self.settings.tampered_motion_s:
            # the view is not the one the background and nuisance levels were learnt on (a branch pressed onto
            # the lens, the housing knocked round): a moment's motion there is as likely the view itself moving,
            # and the ARC already has the tamper alarm; someone walking in it moves for longer
            return []
        self._alarm = _ActiveAlarm(self.new_id(), ts, frame, ts, result.score)
        self.phase = Phase.ALARM
        return [AlarmStarted(self._alarm.event_id, ts, frame, result.score, tuple(result.boxes))]

    def _while_active(self, ts: float, frame: int, result: MotionResult) -> list[EngineEvent]:
        alarm = self._alarm
        assert alarm is not None
        if ts - alarm.started_ts >= self.settings.max_alarm_s:
            return [self._end(ts, frame, "max length")]
        if result.motion:
            alarm.last_motion_ts = ts
            alarm.peak_score = max(alarm.peak_score, result.score)
        if self.phase is Phase.ALARM:
            if ts - alarm.last_motion_ts >= self.settings.event_gap_s:
                self.phase = Phase.POST_ROLL
                alarm.quiet_since = ts
                return [MotionStopped(alarm.event_id, ts, frame)]
            return []
        # post-roll: renewed sustained motion resumes the same alarm; otherwise end once post-roll has elapsed
        if self._streak >= self.settings.min_motion_frames:
            self.phase = Phase.ALARM
            alarm.quiet_since = None
            return []
        if ts - alarm.quiet_since >= self.post_roll_s:
            return [self._end(ts, frame, "motion stopped")]
        return []

    def _end(self, ts: float, frame: int, reason: str) -> AlarmEnded:
        alarm = self._alarm
        assert alarm is not None
        self._alarm = None
        self.phase = Phase.IDLE
        self._streak = 0
        return AlarmEnded(alarm.event_id, ts, frame, alarm.started_frame, alarm.peak_score, reason)

    def set_armed(self, armed: bool, ts: float, frame: int) -> list[EngineEvent]:
        """Arm or disarm; disarming ends an active alarm."""
        self.armed = armed
        if not armed and self._alarm is not None:
            return [self._end(ts, frame, "disarmed")]
        return []

    def finish(self, ts: float, frame: int) -> list[EngineEvent]:
        """End any active alarm because the agent is stopping or the recording ended."""
        if self._alarm is None:
            return []
        return [self._end(ts, frame, "shutdown")]
