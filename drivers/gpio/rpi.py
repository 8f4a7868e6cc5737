"""GPIO on a Raspberry Pi through the RPi.GPIO API (on a Pi 5, the rpi-lgpio package provides the same module).

Edges are caught by RPi.GPIO callbacks (a background thread) and stamped with the injected clock; poll(now) moves
them onto the caller's timeline and also samples every input, so an edge the kernel failed to report is still
seen at the next poll. Outputs are left driven to their off level on close (not released to floating inputs,
which could switch an active-low relay board on).
"""

from __future__ import annotations

import atexit
from collections import deque

from common.clock import Clock
from common.errors import HardwareError
from drivers.gpio.base import Gpio, GpioOutput, GpioSettings

_INSTALL_HINT = ("install python3-rpi.gpio (apt) or RPi.GPIO (pip) on a Pi 4 and earlier, "
                 "rpi-lgpio (pip) on a Pi 5")


def _import_gpio():
    try:
        import RPi.GPIO as GPIO  # noqa: N814 - the library's conventional name
    except ImportError as exc:
        raise HardwareError(f"GPIO backend 'rpi' needs the RPi.GPIO module, which is not installed "
                            f"({exc}); {_INSTALL_HINT}, or set gpio.backend = 'simulated'") from None
    except RuntimeError as exc:  # RPi.GPIO raises this when not running on a Pi or without /dev/gpiomem access
        raise HardwareError(f"GPIO backend 'rpi' cannot use RPi.GPIO on this machine: {exc}") from None
    return GPIO


class RpiGpio(Gpio):
    def __init__(self, settings: GpioSettings, clock: Clock) -> None:
        super().__init__(settings, history_len=1000)
        self._clock = clock
        self._edges: deque[tuple[float, int, int]] = deque()  # (monotonic, pin, level), from RPi.GPIO's thread
        self._gpio = None

    def open(self) -> None:
        GPIO = _import_gpio()
        try:
            self._gpio = GPIO  # before add_event_detect: callbacks read through it
            GPIO.setwarnings(False)
            GPIO.setmode(GPIO.BCM)
            for output in self.settings.outputs:
                GPIO.setup(output.pin, GPIO.OUT, initial=GPIO.HIGH if output.active_low else GPIO.LOW)
            pulls = {"up": GPIO.PUD_UP, "down": GPIO.PUD_DOWN, "off": GPIO.PUD_OFF}
            for line in self.settings.inputs:
                GPIO.setup(line.pin, GPIO.IN, pull_up_down=pulls[line.pull])
                GPIO.add_event_detect(line.pin, GPIO.BOTH, callback=self._on_edge)
        except (RuntimeError, ValueError) as exc:
            self._gpio = None
            inputs = [line.pin for line in self.settings.inputs]
            outputs = [line.pin for line in self.settings.outputs]
            raise HardwareError(f"cannot set up GPIO pins {inputs} (inputs) / {outputs} (outputs): {exc}") from None
        atexit.register(self._outputs_off)  # the last line of defence if close() is never reached

    def _on_edge(self, pin: int) -> None:
        # read at once: a short pulse may be over by the next poll
        self._edges.append((self._clock.monotonic(), pin, self._gpio.input(pin)))

    def _raw_edges(self, now: float) -> list[tuple[float, str, int]]:
        if self._gpio is None:
            raise HardwareError("GPIO backend 'rpi' polled before open()")
        offset = now - self._clock.monotonic()  # edges were stamped on the clock; move them to the caller's timeline
        raw: list[tuple[float, str, int]] = []
        while self._edges:
            mono, pin, level = self._edges.popleft()
            raw.append((min(now, mono + offset), self._by_pin[pin].id, level))
        for line in self.settings.inputs:
            raw.append((now, line.id, self._gpio.input(line.pin)))
        return sorted(raw, key=lambda row: row[0])

    def _write(self, output: GpioOutput, level: int) -> None:
        if self._gpio is None:
            raise HardwareError(f"GPIO output {output.id!r} written before open()")
        self._gpio.output(output.pin, level)

    def close(self, now: float | None = None) -> None:
        if self._gpio is not None:  # never opened (or already closed): no pins to switch off or free
            super().close(now)

    def _outputs_off(self) -> None:
        if self._gpio is not None:
            for output in self.settings.outputs:
                self._gpio.output(output.pin, int(output.active_low))

    def _release(self) -> None:
        if self._gpio is None:
            return
        for line in self.settings.inputs:
            self._gpio.remove_event_detect(line.pin)
        self._gpio.cleanup([line.pin for line in self.settings.inputs])
        atexit.unregister(self._outputs_off)
        self._gpio = None
