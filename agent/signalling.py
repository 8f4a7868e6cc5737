"""Overt/covert signalling: an alarm flashes the strobe (a pattern, for a set time) and optionally sounds the siren.

Covert mode drives nothing. Outputs are never left on: each activation is cut at max_on_s whatever else says,
mode changes to covert and close() switch everything off at once. Time is the `now` the caller passes (the frame
time, which a replay runs on), or else the injected clock's; tick() must be called often (every frame) because the
pattern and time limits are applied there, without threads or sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from common.clock import Clock
from common.errors import ConfigError
from common.settings import Section
from drivers.gpio.base import Gpio, GpioSettings

Mode = Literal["overt", "covert"]
_EPS = 1e-6  # frame times are sums of float steps: 100.19999999 must count as the 100.2 boundary


class SignallingSettings(Section):
    """Config section [signalling]."""

    mode: Mode = Field("covert", description="overt: alarms flash the strobe (and sound the siren if enabled); "
                                             "covert: nothing lights or sounds.")
    strobe: bool = Field(True, description="Overt mode: drive the strobe outputs on alarm.")
    strobe_pattern_ms: tuple[int, ...] = Field((500, 500), min_length=2, max_length=32, description="On/off "
                                               "durations in ms, repeated (e.g. [100,100,100,700] double flash). "
                                               "Applied at each tick, so keep segments >= the frame interval.")
    strobe_s: float = Field(30.0, gt=0, le=1800, description="How long the strobe runs after an alarm starts.")
    siren: bool = Field(False, description="Overt mode: also sound the siren outputs.")
    siren_s: float = Field(10.0, gt=0, le=900, description="How long the siren sounds after an alarm starts.")
    stop_with_alarm: bool = Field(False, description="Stop strobe and siren when the alarm ends, even if their "
                                                     "time is not up.")
    max_on_s: float = Field(180.0, gt=0, le=1800, description="Hard limit: no output stays active longer than this "
                                                              "per activation, even if alarms keep re-triggering.")

    @model_validator(mode="after")
    def _check(self) -> "SignallingSettings":
        pattern = self.strobe_pattern_ms
        if len(pattern) % 2:
            raise ValueError(f"strobe_pattern_ms needs on/off pairs (an even count), got {len(pattern)} values")
        if any(ms < 0 or ms > 60_000 for ms in pattern) or any(ms <= 0 for ms in pattern[::2]):
            raise ValueError("strobe_pattern_ms: on durations must be 1-60000 ms and off durations 0-60000 ms")
        for name in ("strobe_s", "siren_s"):
            if getattr(self, name) > self.max_on_s:
                raise ValueError(f"{name} ({getattr(self, name)}) exceeds max_on_s ({self.max_on_s})")
        return self


def signalling_problems(settings: SignallingSettings, gpio: GpioSettings) -> list[str]:
    """Overt settings that could never signal because the output is not wired (for a config-time check)."""
    kinds = {line.kind for line in gpio.outputs}
    wanted = [("strobe", settings.strobe), ("siren", settings.siren)] if settings.mode == "overt" else []
    return [f"signalling.{kind} is enabled in overt mode but gpio.outputs has no output of kind {kind!r}"
            for kind, enabled in wanted if enabled and kind not in kinds]


@dataclass(slots=True)
class _Activation:
    started: float
    strobe_until: float
    siren_until: float


class Signaller:
    """Drives the strobe and siren outputs of a Gpio from alarm start/end and the clock."""

    def __init__(self, settings: SignallingSettings, gpio: Gpio, clock: Clock) -> None:
        self.settings = settings
        self.gpio = gpio
        self.clock = clock
        self.mode: Mode = settings.mode  # runtime state: may be changed remotely
        self._strobes = gpio.outputs_of_kind("strobe")
        self._sirens = gpio.outputs_of_kind("siren")
        self._period = sum(settings.strobe_pattern_ms) / 1000
        self._active: _Activation | None = None
        self._blink_until = float("-inf")  # a walk test's single flash (blink())

    def _now(self, now: float | None) -> float:
        return self.clock.monotonic() if now is None else now

    @property
    def active(self) -> bool:
        return self._active is not None

    def alarm_started(self, now: float | None = None) -> None:
        """An alarm began (or re-triggered): start or extend the activation, within max_on_s of its start."""
        now = self._now(now)
        if self.mode == "covert":
            return
        act = self._active or _Activation(now, now, now)
        cap = act.started + self.settings.max_on_s
        if self.settings.strobe:
            act.strobe_until = min(cap, max(act.strobe_until, now + self.settings.strobe_s))
        if self.settings.siren:
            act.siren_until = min(cap, max(act.siren_until, now + self.settings.siren_s))
        self._active = act
        self.tick(now)

    def blink(self, now: float | None = None) -> None:
        """One flash of the strobe (the pattern's first on-segment): a walk-test detection, shown on the unit.
        A running alarm activation is ended: while the installer walks, alarms are the installer's own, and one
        flash per detection (not 30 s of pattern, nor the siren) is what tells them apart. A flash still on is not
        lengthened (the alarm a detection raises a few frames later must not make it a steady light). Covert:
        nothing."""
        now = self._now(now)
        if self.mode == "covert" or not self.settings.strobe:
            return
        self._active = None
        if now >= self._blink_until - _EPS:
            self._blink_until = now + min(self.settings.strobe_pattern_ms[0] / 1000,
                                          self.settings.max_on_s)
        self.tick(now)

    def alarm_ended(self, now: float | None = None) -> None:
        now = self._now(now)
        if self.settings.stop_with_alarm:
            self.silence(now)
        else:
            self.tick(now)

    def set_mode(self, mode: Mode, now: float | None = None) -> None:
        """Change mode at run time; covert switches everything off at once."""
        if mode not in ("overt", "covert"):
            raise ConfigError(f"signalling mode must be 'overt' or 'covert' (got {mode!r})")
        self.mode = mode
        if mode == "covert":
            self.silence(now)

    def silence(self, now: float | None = None) -> None:
        """End the activation and switch strobe and siren off (e.g. on disarm)."""
        self._active, self._blink_until = None, float("-inf")
        self.tick(now)

    def tick(self, now: float | None = None) -> None:
        """Apply pattern and time limits at `now`; writes only outputs whose state changes."""
        now = self._now(now)
        act = self._active
        if act is not None and now >= max(act.strobe_until, act.siren_until) - _EPS:
            self._active = act = None
        covert = self.mode == "covert"
        strobe_on = not covert and ((act is not None and now < act.strobe_until - _EPS
                                     and self._pattern_on(now - act.started)) or now < self._blink_until - _EPS)
        siren_on = not covert and act is not None and now < act.siren_until - _EPS
        for output_id in self._strobes:
            self._drive(output_id, strobe_on, now)
        for output_id in self._sirens:
            self._drive(output_id, siren_on, now)

    def _pattern_on(self, elapsed: float) -> bool:
        position = (elapsed % self._period) * 1000 + _EPS * 1000
        if position >= self._period * 1000:
            position -= self._period * 1000
        for index, ms in enumerate(self.settings.strobe_pattern_ms):
            if position < ms:
                return index % 2 == 0  # even segments are "on"
            position -= ms
        return False

    def _drive(self, output_id: str, on: bool, now: float) -> None:
        if self.gpio.is_on(output_id) != on:
            self.gpio.set(output_id, on, now)

    def close(self, now: float | None = None) -> None:
        """Safe state: end any activation and switch every output (strobe, siren, LED) off."""
        self._active, self._blink_until = None, float("-inf")
        self.gpio.safe_state(self._now(now))
