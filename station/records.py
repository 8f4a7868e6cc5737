"""The records a deployment report is made from (station/deployment_report.py): one JSON line per message as
received, appended under <out>/<device>/ (events.jsonl, heartbeats.jsonl, status.jsonl, results.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

from station.paths import inside


class Records:
    """Appends to out/<device>/<name>; without an out folder nothing is written (the monitor only prints)."""

    def __init__(self, out_dir: Path | None) -> None:
        self.out_dir = Path(out_dir) if out_dir is not None else None

    def append(self, device: str, name: str, data: dict) -> None:
        if self.out_dir is None:
            return
        path = inside(self.out_dir, device, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as records:
            records.write(json.dumps(data, sort_keys=True) + "\n")
