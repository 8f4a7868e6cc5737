"""One bench row (name, target, figures, verdict) as a JSON line, collected by bench/run_all.py into its table."""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Sequence

#: run_all.py names the file each script appends its rows to; run alone, a script only prints
ROWS_ENV = "BENCH_ROWS"
#: the Pi column's one assumption, stated with the table
PI_SLOWDOWN = (6, 12)
PI_ASSUMPTION = (f"Pi estimate: a Pi 4 core is {PI_SLOWDOWN[0]}-{PI_SLOWDOWN[1]}x slower than one core of this "
                 "machine (CPU figures scaled by that; memory unchanged)")


UNIT_FILE = Path(__file__).resolve().parents[1] / "systemd" / "pid-agent.service"


def unit_environment() -> dict[str, str]:
    """The systemd unit's Environment= settings (its malloc tuning), read from the unit file itself, so a bench
    runs the agent as the unit does (glibc reads them once, at a process's start)."""
    settings = {}
    for line in UNIT_FILE.read_text().splitlines():
        if line.startswith("Environment="):
            settings.update(item.split("=", 1) for item in line.removeprefix("Environment=").split())
    return settings


def run_as_the_unit() -> None:
    """Re-run this bench script under the unit's environment unless it already has it (then return)."""
    settings = unit_environment()
    if any(os.environ.get(key) != value for key, value in settings.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, **settings))


def pi_estimate(value: float, unit: str, slower: bool = False) -> str:
    """A rate (fps: divided) or a time/CPU cost (slower=True: multiplied) on a Pi 4 core, as a range."""
    low, high = PI_SLOWDOWN
    if slower:
        return f"{value * low:.0f}-{value * high:.0f} {unit}"
    return f"{value / high:.1f}-{value / low:.1f} {unit}"


def emit(row: str, target: str, values: Sequence[float] | None, unit: str, met: bool | None,
         note: str = "", pi: str = "") -> None:
    """Record a row: `values` are the repetitions (None: skipped), `met` the verdict (None: no target here),
    `pi` the Pi 4 estimate (see PI_ASSUMPTION)."""
    figures = None
    if values:
        figures = {"min": min(values), "median": statistics.median(values), "max": max(values), "reps": len(values)}
    record = {"row": row, "target": target, "unit": unit, "figures": figures, "note": note, "pi_estimate": pi,
              "verdict": "skipped" if values is None else ("n/a" if met is None else ("PASS" if met else "FAIL"))}
    print(f"  [{record['verdict']}] {row}: {format_figures(record)} (target {target})", flush=True)
    path = os.environ.get(ROWS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")


def format_figures(record: dict) -> str:
    figures = record["figures"]
    if figures is None:
        return record["note"] or "skipped"
    if figures["reps"] == 1:
        text = f"{figures['median']:.1f} {record['unit']}"
    else:
        text = f"{figures['min']:.1f} / {figures['median']:.1f} / {figures['max']:.1f} {record['unit']}"
    return f"{text} ({record['note']})" if record["note"] else text
