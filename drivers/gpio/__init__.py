"""GPIO drivers: PIR/trigger/tamper/power inputs and strobe/siren/LED outputs behind one interface.

make_gpio(settings) picks the backend named in config; hardware libraries are imported only by their backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from common.clock import Clock
from common.errors import ConfigError
from drivers.gpio.base import Gpio, GpioInput, GpioOutput, GpioSettings, InputChange, OutputChange
from drivers.gpio.simulated import SimulatedGpio, parse_script, sidecar_script

__all__ = ["BACKENDS", "Gpio", "GpioInput", "GpioOutput", "GpioSettings", "InputChange", "OutputChange",
           "SimulatedGpio", "make_gpio", "parse_script", "sidecar_script"]


def _simulated(settings: GpioSettings, clock: Clock, script: Path | None) -> Gpio:
    return SimulatedGpio(settings, script=script if script is not None else settings.script)


def _rpi(settings: GpioSettings, clock: Clock, script: Path | None) -> Gpio:
    from drivers.gpio.rpi import RpiGpio  # keeps RPi.GPIO out of every other process path

    return RpiGpio(settings, clock=clock)


BACKENDS: dict[str, Callable[[GpioSettings, Clock, Path | None], Gpio]] = {
    "simulated": _simulated,
    "rpi": _rpi,
}


def make_gpio(settings: GpioSettings, clock: Clock, script: str | Path | None = None) -> Gpio:
    """Build (not open) the configured GPIO backend.

    script: simulated backend only; overrides settings.script (e.g. the sidecar found by sidecar_script(video)).
    clock: the clock edge timestamps are read from (rpi; the simulated backend is driven by poll times).
    """
    try:
        factory = BACKENDS[settings.backend]
    except KeyError:
        raise ConfigError(f"unknown gpio backend {settings.backend!r}; choose one of {sorted(BACKENDS)}") from None
    return factory(settings, clock, Path(script) if script is not None else None)
