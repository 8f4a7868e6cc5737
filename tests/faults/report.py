"""Prints the fault table from the results file the fault tests append to: `python tests/faults/report.py FILE`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("fault", "injected", "survived", "lost", "duplicated", "redelivered", "note")


def table(rows: list[dict]) -> str:
    cells = [[str(row.get(name, "")) for name in COLUMNS] for row in rows]
    widths = [max(len(name), *(len(line[i]) for line in cells)) if cells else len(name)
              for i, name in enumerate(COLUMNS)]
    lines = ["  ".join(name.ljust(width) for name, width in zip(COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)


def failed(row: dict) -> bool:
    """A fault row fails on any loss, duplicate or casualty; a self-test row (a broken build) fails on no loss."""
    if row.get("self_test"):
        return not row["lost"]
    return bool(row["lost"] or row["duplicated"] or row["survived"] < row["injected"])


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "build/faults.jsonl")
    if not path.is_file():
        print(f"no fault results at {path} (did the fault tests run?)", file=sys.stderr)
        return 1
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(table(rows))
    bad = [row["fault"] for row in rows if failed(row)]
    if bad:
        print(f"FAILED: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
