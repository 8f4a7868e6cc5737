"""A real small filesystem for full-disk tests: a tmpfs mounted in a private mount namespace (`unshare --mount
--map-root-user`), visible only to the scenario process run inside it (tests/disk_scenarios.py), which prints its
findings as one JSON line. Where the namespace or the mount is refused, the test is skipped with the reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_MOUNT_THEN_RUN = 'mount -t tmpfs -o size="$1" tmpfs "$2" || exit 97; shift 2; exec "$@"'
MOUNT_FAILED = 97


def run_in_tmpfs(size: str, scenario: str, *args: str, timeout: float = 300.0) -> dict:
    """Run tests.disk_scenarios <scenario> <mount point> args... on a tmpfs of this size; its JSON result."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1): cannot mount a private tmpfs (util-linux missing)")
    mount_point = tempfile.mkdtemp(prefix="pid-smallfs-")
    command = [unshare, "--mount", "--map-root-user", "sh", "-c", _MOUNT_THEN_RUN, "sh", size, mount_point,
               sys.executable, "-m", "tests.disk_scenarios", scenario, mount_point, *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    finally:
        os.rmdir(mount_point)  # empty outside the namespace: the tmpfs went with it
    if done.returncode == MOUNT_FAILED or (done.returncode != 0 and "unshare:" in done.stderr):
        pytest.skip(f"a private tmpfs cannot be mounted here: {done.stderr.strip()[-300:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, f"scenario {scenario} failed (rc {done.returncode}):\n" \
                                           f"{done.stderr[-4000:]}"
    return json.loads(lines[-1])
