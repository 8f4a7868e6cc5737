"""One bench row (name, target, figures, verdict) as a JSON line, collected by bench/run_all.py into its table."""

from __future__ import annotations

import json
import os
import statistics
from typing import Sequence

#: run_all.py names the file each script appends its rows to; run alone, a script only prints
ROWS_ENV = "BENCH_ROWS"


def emit(row: str, target: str, values: Sequence[float] | None, unit: str, met: bool | None,
         note: str = "") -> None:
    """Record a row: `values` are the repetitions (None: skipped), `met` the verdict (None: no target here)."""
    figures = None
    if values:
        figures = {"min": min(values), "median": statistics.median(values), "max": max(values), "reps": len(values)}
    record = {"row": row, "target": target, "unit": unit, "figures": figures, "note": note,
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
        return f"{figures['median']:.1f} {record['unit']}"
    return f"{figures['min']:.1f} / {figures['median']:.1f} / {figures['max']:.1f} {record['unit']}"
