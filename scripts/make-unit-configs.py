#!/usr/bin/env python3
"""Write one validated agent config per unit from a template and a CSV of units, for flashing a batch.

    scripts/make-unit-configs.py --template config/unit.example.toml --units units.csv --out build/units

units.csv has a header with at least `device_id` and `site_ref`; optional columns `username`, `password`.
Every generated file is validated with the agent's own schema before it is written; a bad row stops the batch
with the row number and the problem, so no unit leaves the bench with a broken config.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tomli_w  # noqa: E402

from agent.config import parse_config  # noqa: E402
from common.errors import ConfigError  # noqa: E402


def unit_config(template: dict, row: dict) -> dict:
    config = {**template, "device_id": row["device_id"], "site_ref": row["site_ref"]}
    broker = dict(config.get("broker", {}))
    for column in ("username", "password"):
        if row.get(column):
            broker[column] = row[column]
    if broker:
        config["broker"] = broker
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", type=Path, required=True)
    parser.add_argument("--units", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    template = tomllib.loads(args.template.read_text(encoding="utf-8"))
    with args.units.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    seen: set[str] = set()
    configs = {}
    for number, row in enumerate(rows, start=2):
        data = unit_config(template, row)
        try:
            parse_config(data, origin=f"{args.units}:{number}")
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if row["device_id"] in seen:
            print(f"error: {args.units}:{number}: device_id {row['device_id']} appears twice", file=sys.stderr)
            return 2
        seen.add(row["device_id"])
        configs[row["device_id"]] = data
    args.out.mkdir(parents=True, exist_ok=True)
    for device_id, data in configs.items():
        (args.out / f"{device_id}.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
    print(f"wrote {len(configs)} unit configs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
