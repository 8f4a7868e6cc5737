"""The GPIO interface every backend implements: debounced logical inputs, recorded outputs.

Time-driven: the caller passes `now` (frame or clock time, seconds on one monotonic timeline) to poll() and set().
Both backends feed raw electrical edges through the same code here (active-low inversion, debounce), so the
simulated backend exercises the exact logic the real one runs.
"""

from __future__ import annotations

import abc
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import Field, model_validator

from common.errors import ConfigError
from common.settings import Section

InputKind = Literal["pir", "trigger", "tamper", "power"]
OutputKind = Literal["strobe", "siren", "led"]
_ID = r"^[A-Za-z0-9_.-]{1,32}$"


class GpioInput(Section):
    """One input line; each detector is its own input and is reported individually."""

    id: str = Field(pattern=_ID, description="Unique input id, e.g. 'pir-east'; appears in events and alarms.")
    pin: int = Field(ge=2, le=27, description="BCM GPIO number.")
    kind: InputKind = Field(description="pir: motion detector; trigger: external alarm contact; "
                                        "tamper: enclosure switch; power: mains-fail signal.")
    zone: str = Field("default", min_length=1, max_length=64, description="Detection zone the input covers; "
                      "the same name as a video detection zone ([[detection.zones]] name) for PIR/video fusion.")
    pull: Literal["up", "down", "off"] = Field("down", description="Internal pull resistor.")
    active_low: bool = Field(False, description="True when the input is asserted at 0 V (e.g. an open-collector "
                                                "PIR, a normally-closed tamper loop pulled up).")
    debounce_ms: int = Field(50, ge=0, le=10_000, description="A level must hold this long to count; shorter "
                                                              "glitches are ignored.")


class GpioOutput(Section):
    """One output line driving a strobe, siren or LED (through a driver transistor or relay)."""

    id: str = Field(pattern=_ID, description="Unique output id, e.g. 'strobe'.")
    pin: int = Field(ge=2, le=27, description="BCM GPIO number.")
    kind: OutputKind = Field(description="strobe and siren are driven by alarms in overt mode; led is kept off.")
    active_low: bool = Field(False, description="True when 0 V switches the load on (many relay boards).")


class GpioSettings(Section):
    """Config section [gpio]."""

    backend: Literal["simulated", "rpi"] = Field("simulated", description="simulated: pins driven by a script; "
                                                 "rpi: the RPi.GPIO API (rpi-lgpio on a Pi 5).")
    inputs: tuple[GpioInput, ...] = Field((), description="Input lines ([[gpio.inputs]] tables).")
    outputs: tuple[GpioOutput, ...] = Field((), description="Output lines ([[gpio.outputs]] tables).")
    script: Path | None = Field(None, description="Simulated backend: file of timestamped input levels (CSV "
                                "ts,input,level or JSON lines). Unset: '<video>.pir.csv'/.pir.jsonl beside a replay.")

    @model_validator(mode="after")
    def _unique(self) -> "GpioSettings":
        lines = [*self.inputs, *self.outputs]
        for attr in ("id", "pin"):
            seen: set = set()
            for line in lines:
                value = getattr(line, attr)
                if value in seen:
                    raise ValueError(f"gpio {attr} {value!r} is used by more than one input/output")
                seen.add(value)
        return self


class InputChange(NamedTuple):
    """A debounced change of an input's logical state (active = detector asserted), at the raw edge's time."""

    ts: float
    input_id: str
    active: bool


class OutputChange(NamedTuple):
    """An output write: ts, output id, on."""

    ts: float
    output_id: str
    on: bool


@dataclass(slots=True)
class _Debouncer:
    """Accepts a new level only once it has held for `hold_s`; the change is dated at its raw edge."""

    hold_s: float
    stable: bool = False
    pending_ts: float | None = None

    def feed(self, ts: float, level: bool) -> None:
        if level == self.stable:
            self.pending_ts = None          # a glitch shorter than the hold time: forget it
        elif self.pending_ts is None:
            self.pending_ts = ts

    def settle(self, now: float) -> float | None:
        """Return the edge time of a change that has now held long enough, else None."""
        if self.pending_ts is None or now - self.pending_ts < self.hold_s:
            return None
        ts, self.pending_ts = self.pending_ts, None
        self.stable = not self.stable
        return ts


class Gpio(abc.ABC):
    """Inputs and outputs of one unit. Use as a context manager or call open()/close()."""

    def __init__(self, settings: GpioSettings, history_len: int | None = None) -> None:
        self.settings = settings
        self.inputs = {line.id: line for line in settings.inputs}
        self.outputs = {line.id: line for line in settings.outputs}
        self._by_pin = {line.pin: line for line in settings.inputs}
        self._debounce = {line.id: _Debouncer(line.debounce_ms / 1000) for line in settings.inputs}
        self._output_state = {line.id: False for line in settings.outputs}
        self._now = 0.0  # latest time seen by poll()/set(); dates the safe-state writes of close()
        self._closed = False
        #: every output write, oldest first (bounded on real hardware so a long run cannot grow it forever)
        self.history: list[OutputChange] | deque[OutputChange] = (
            [] if history_len is None else deque(maxlen=history_len))

    # -- to implement -------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def open(self) -> None:
        """Acquire the pins; raise HardwareError with a clear message when that is impossible."""

    @abc.abstractmethod
    def _raw_edges(self, now: float) -> list[tuple[float, str, int]]:
        """Electrical levels seen up to `now`: (ts, input id, 0|1), in time order."""

    @abc.abstractmethod
    def _write(self, output: GpioOutput, level: int) -> None:
        """Drive an output pin to an electrical level."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Free the pins (after outputs have been switched off)."""

    # -- shared behaviour ---------------------------------------------------------------------------------------
    def poll(self, now: float) -> list[InputChange]:
        """Debounced input changes up to `now`, oldest first."""
        self._now = max(self._now, now)
        changes: list[InputChange] = []
        for ts, input_id, level in self._raw_edges(now):
            self._settle_all(ts, changes)     # a change that matured before this edge is not undone by it
            line = self.inputs[input_id]
            self._debounce[input_id].feed(ts, bool(level) != line.active_low)
        self._settle_all(now, changes)
        return sorted(changes)

    def _settle_all(self, now: float, out: list[InputChange]) -> None:
        for input_id, debouncer in self._debounce.items():
            edge_ts = debouncer.settle(now)
            if edge_ts is not None:
                out.append(InputChange(edge_ts, input_id, debouncer.stable))

    def is_active(self, input_id: str) -> bool:
        """Current debounced state of an input."""
        return self._debounce[self._input(input_id).id].stable

    def set(self, output_id: str, on: bool, now: float) -> None:
        """Switch an output on or off; every write is appended to `history`."""
        output = self.output(output_id)
        self._now = max(self._now, now)
        self._write(output, int(on != output.active_low))
        self._output_state[output_id] = on
        self.history.append(OutputChange(now, output_id, on))

    def is_on(self, output_id: str) -> bool:
        return self._output_state[self.output(output_id).id]

    def safe_state(self, now: float) -> None:
        """Switch every output off (written even if believed off: the pin may have been disturbed)."""
        for output_id in self.outputs:
            self.set(output_id, False, now)

    def close(self, now: float | None = None) -> None:
        """Outputs off, then release the pins. Safe to call twice."""
        if self._closed:
            return
        self.safe_state(self._now if now is None else now)
        self._release()
        self._closed = True

    def output(self, output_id: str) -> GpioOutput:
        try:
            return self.outputs[output_id]
        except KeyError:
            raise ConfigError(f"no GPIO output {output_id!r}; configured outputs: "
                              f"{sorted(self.outputs) or 'none'}") from None

    def outputs_of_kind(self, kind: OutputKind) -> list[str]:
        return [line.id for line in self.settings.outputs if line.kind == kind]

    def _input(self, ref: str | int) -> GpioInput:
        """An input by id, or by BCM pin number (int or digit string)."""
        if isinstance(ref, str) and ref in self.inputs:
            return self.inputs[ref]
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            if int(ref) in self._by_pin:
                return self._by_pin[int(ref)]
        raise ConfigError(f"no GPIO input {ref!r}; configured inputs: "
                          f"{[f'{i.id} (pin {i.pin})' for i in self.settings.inputs] or 'none'}")

    def __enter__(self) -> "Gpio":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
