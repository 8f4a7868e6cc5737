"""Typed events from the GPIO inputs: PIR, external trigger, enclosure tamper, mains power.

Each input is reported on its own (its id and zone), never grouped. `Sensors` polls the driver, turns debounced
changes into these events, and keeps the current state for heartbeats.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from drivers.gpio.base import Gpio, InputChange
from models.fusion import FaultReport, Fusion, FusionSettings, order_sources
from models.motion import MotionResult


@dataclass(frozen=True, slots=True)
class PirEvent:
    """A PIR detector asserted (active=True) or released."""

    ts: float
    input_id: str
    zone: str
    active: bool
    kind = "pir"



@dataclass(frozen=True, slots=True)
class TriggerEvent:
    """An external alarm contact closed (active=True) or opened."""

    ts: float
    input_id: str
    zone: str
    active: bool
    kind = "trigger"



@dataclass(frozen=True, slots=True)
class TamperEvent:
    """The enclosure was opened (open=True) or closed again."""

    ts: float
    input_id: str
    zone: str
    open: bool
    kind = "tamper"



@dataclass(frozen=True, slots=True)
class PowerEvent:
    """Mains power failed (mains_ok=False; the unit runs on its battery) or came back."""

    ts: float
    input_id: str
    mains_ok: bool
    kind = "power"



SensorEvent = PirEvent | TriggerEvent | TamperEvent | PowerEvent


def to_event(gpio: Gpio, change: InputChange) -> SensorEvent:
    """The typed event for one debounced input change (active = the input is asserted)."""
    line = gpio.inputs[change.input_id]
    if line.kind == "pir":
        return PirEvent(change.ts, line.id, line.zone, change.active)
    if line.kind == "trigger":
        return TriggerEvent(change.ts, line.id, line.zone, change.active)
    if line.kind == "tamper":
        return TamperEvent(change.ts, line.id, line.zone, open=change.active)
    return PowerEvent(change.ts, line.id, mains_ok=not change.active)  # the power input asserts on mains failure


class Sensors:
    """Polls the GPIO inputs and keeps their state."""

    def __init__(self, gpio: Gpio) -> None:
        self.gpio = gpio

    def poll(self, now: float) -> list[SensorEvent]:
        return [to_event(self.gpio, change) for change in self.gpio.poll(now)]

    def pir_zones(self) -> dict[str, str]:
        """PIR input id -> zone, for models.fusion.Fusion."""
        return {line.id: line.zone for line in self.gpio.settings.inputs if line.kind == "pir"}

    def state(self) -> dict:
        """Current input states for the heartbeat: each input by id."""
        inputs = self.gpio.settings.inputs
        power = [i.id for i in inputs if i.kind == "power"]
        return {
            "pir_active": sorted(i.id for i in inputs if i.kind == "pir" and self.gpio.is_active(i.id)),
            "triggers_active": sorted(i.id for i in inputs if i.kind == "trigger" and self.gpio.is_active(i.id)),
            "tamper_open": sorted(i.id for i in inputs if i.kind == "tamper" and self.gpio.is_active(i.id)),
            # None: no mains-fail input is wired, so the state is unknown
            "mains_ok": (not any(self.gpio.is_active(i) for i in power)) if power else None,
        }


@dataclass(frozen=True, slots=True)
class FrameInputs:
    """What the input side adds to one frame."""

    result: MotionResult                 # the detector's result with `motion` replaced by the fused decision
    confirmed_by: tuple[str, ...]        # technologies that confirmed this frame ("video", "pir:<id>")
    events: tuple[SensorEvent, ...]      # debounced input changes since the last frame, oldest first
    faults: tuple[FaultReport, ...]      # suspected detector faults raised or cleared on this frame


class AlarmInputs:
    """Per-frame glue: poll GPIO -> typed events -> PIR/video fusion -> the motion decision the engine sees.

    It also collects which technologies confirmed an alarm: those of the confirmed frames that led up to its start
    (for the start payload) and of every confirmed frame until it ends (for the end payload).
    """

    def __init__(self, gpio: Gpio, fusion: FusionSettings) -> None:
        self.sensors = Sensors(gpio)
        self.fusion = Fusion(fusion, self.sensors.pir_zones())
        self._streak: set[str] = set()
        self._alarm: set[str] | None = None

    def frame(self, ts: float, result: MotionResult, motion_zones: Iterable[str | None]) -> FrameInputs:
        """motion_zones: the zones with video motion on this frame (None = the whole image, when no zones are
        configured); required, so that video in one zone can never confirm another zone's PIR."""
        events = self.sensors.poll(ts)
        for event in events:
            if isinstance(event, PirEvent):
                self.fusion.observe_pir(event.ts, event.input_id, event.active)
        fused = self.fusion.step(ts, motion_zones)
        self._streak = self._streak | set(fused.confirmed_by) if fused.confirmed else set()
        if self._alarm is not None:
            self._alarm |= set(fused.confirmed_by)
        return FrameInputs(replace(result, motion=fused.confirmed), fused.confirmed_by, tuple(events), fused.faults)

    def alarm_started(self) -> list[str]:
        """Call on AlarmStarted: the technologies that confirmed it, for payload["confirmed_by"]."""
        self._alarm = set(self._streak)
        return list(order_sources(self._alarm))

    def alarm_ended(self) -> list[str]:
        """Call on AlarmEnded: every technology that confirmed any frame of the alarm."""
        sources, self._alarm = self._alarm or set(), None
        return list(order_sources(sources))

