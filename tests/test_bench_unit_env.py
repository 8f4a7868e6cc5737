"""The benches run the agent with the systemd unit's malloc settings, read from the unit file itself
(bench/rows.py), so a change to the unit's Environment= is what the bench rows measure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.rows import UNIT_FILE, unit_environment

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = f"""
import json, os, sys
sys.path.insert(0, {str(ROOT)!r})
from bench.rows import run_as_the_unit
run_as_the_unit()
print(json.dumps({{k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}}))
"""


def unit_lines() -> list[str]:
    return [line.removeprefix("Environment=") for line in UNIT_FILE.read_text().splitlines()
            if line.startswith("Environment=")]


def test_the_unit_sets_malloc_and_the_benches_read_exactly_that():
    settings = unit_environment()
    assert settings.get("MALLOC_ARENA_MAX") == "2"
    assert [f"{key}={value}" for key, value in settings.items()] == " ".join(unit_lines()).split()


def test_a_bench_started_without_the_settings_reruns_itself_under_them(tmp_path):
    script = tmp_path / "bench_env.py"
    script.write_text(SCRIPT)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    env["MALLOC_ARENA_MAX"] = "8"   # a different value inherited from the shell is replaced too
    out = subprocess.run([sys.executable, str(script)], env=env, check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == unit_environment()
