"""Simulated GPIO: input pins follow a script of timestamped levels, output writes are kept in `history`.

Script file (beside a recording, e.g. `clip.mp4.pir.csv`, so a replay carries its PIR activity):
  CSV with a header `ts,input,level`, or JSON lines `{"ts": 3.2, "input": "pir-east", "level": 1}`.
  ts: seconds on the replay's timeline (frame index / fps, from 0). input: an input id or its BCM pin number.
  level: the electrical pin level 0 or 1, as the real pin would read (active_low inputs assert at 0).
Blank lines and lines starting with '#' are ignored.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
from pathlib import Path

from common.errors import ConfigError, HardwareError, SourceError
from drivers.gpio.base import Gpio, GpioOutput, GpioSettings

SIDECAR_SUFFIXES = (".pir.csv", ".pir.jsonl")


def sidecar_script(video: str | Path) -> Path | None:
    """The input script stored beside a recording (`<video>.pir.csv` or `<video>.pir.jsonl`), if there is one."""
    for suffix in SIDECAR_SUFFIXES:
        candidate = Path(f"{video}{suffix}")
        if candidate.is_file():
            return candidate
    return None


def _level(value: object, where: str) -> int:
    if value in (0, 1, "0", "1") and not isinstance(value, bool):
        return int(value)
    raise SourceError(f"{where}: level must be 0 or 1 (got {value!r})")


def _ts(value: object, where: str) -> float:
    try:
        ts = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SourceError(f"{where}: ts must be a number of seconds (got {value!r})") from None
    if not ts >= 0 or ts == float("inf"):
        raise SourceError(f"{where}: ts must be a finite number >= 0 (got {value!r})")
    return ts


def parse_script(text: str, origin: str = "<script>") -> list[tuple[float, str, int]]:
    """Parse script text into (ts, input ref, level) rows, in file order; errors name the file and line."""
    rows: list[tuple[float, str, int]] = []
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return rows
    if lines[0][1].lstrip().startswith("{"):
        for n, line in lines:
            where = f"{origin}:{n}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(item, dict) or set(item) != {"ts", "input", "level"}:
                raise SourceError(f"{where}: expected an object with exactly the keys ts, input, level")
            rows.append((_ts(item["ts"], where), str(item["input"]), _level(item["level"], where)))
        return rows
    header_no, header = lines[0]
    if [c.strip() for c in next(csv.reader([header]))] != ["ts", "input", "level"]:
        raise SourceError(f"{origin}:{header_no}: CSV header must be 'ts,input,level' (got {header.strip()!r})")
    for n, line in lines[1:]:
        where = f"{origin}:{n}"
        cells = [c.strip() for c in next(csv.reader(io.StringIO(line)))]
        if len(cells) != 3:
            raise SourceError(f"{where}: expected 3 columns ts,input,level (got {len(cells)})")
        rows.append((_ts(cells[0], where), cells[1], _level(cells[2], where)))
    return rows


class SimulatedGpio(Gpio):
    """Pins driven by a script (and/or drive()); outputs recorded in `history` with the caller's timestamps."""

    def __init__(self, settings: GpioSettings, script: str | Path | None = None) -> None:
        super().__init__(settings)
        self.script_path = Path(script) if script is not None else settings.script
        self._pending: list[tuple[float, int, str, int]] = []  # (ts, sequence, input id, level), sorted
        self._sequence = 0
        self._next = 0  # first entry of _pending not yet handed to poll()
        self._consumed_to = float("-inf")
        #: electrical level each output pin was last driven to (what a meter on the pin would show)
        self.pin_levels: dict[int, int] = {}
        self.opened = False

    def open(self) -> None:
        if self.script_path is not None:
            try:
                text = Path(self.script_path).read_text(encoding="utf-8")
            except FileNotFoundError:
                raise SourceError(f"GPIO input script not found: {self.script_path}") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise SourceError(f"cannot read GPIO input script {self.script_path}: {exc}") from None
            for ts, ref, level in parse_script(text, str(self.script_path)):
                self._add(ts, ref, level, f"{self.script_path}")
        for output in self.settings.outputs:
            self._write(output, int(output.active_low))  # like setup(pin, OUT, initial=off)
        self.opened = True

    def drive(self, ts: float, input_ref: str | int, level: int) -> None:
        """Schedule an electrical level on an input (by id or pin) at time ts, as a script line would."""
        self._add(_ts(ts, "drive()"), input_ref, _level(level, "drive()"), "drive()")

    def _add(self, ts: float, ref: str | int, level: int, where: str) -> None:
        if ts < self._consumed_to:
            raise SourceError(f"{where}: input change at {ts} s is before time already polled ({self._consumed_to} s)")
        try:
            input_id = self._input(ref).id
        except ConfigError as exc:
            raise SourceError(f"{where}: {exc}") from None
        # sequence keeps same-time entries in file order
        bisect.insort(self._pending, (ts, self._sequence, input_id, level))
        self._sequence += 1

    def _raw_edges(self, now: float) -> list[tuple[float, str, int]]:
        if not self.opened:
            raise HardwareError("simulated GPIO polled before open() (or after close())")
        cut = max(self._next, bisect.bisect_right(self._pending, (now, float("inf"))))
        due, self._next = self._pending[self._next:cut], cut  # an index, not a slice: long scripts stay O(1)/frame
        self._consumed_to = max(self._consumed_to, now)
        return [(ts, input_id, level) for ts, _, input_id, level in due]

    def _write(self, output: GpioOutput, level: int) -> None:
        self.pin_levels[output.pin] = level

    def _release(self) -> None:
        self.opened = False
