"""The soak (bench/soak.py) as tests: the long one runs ten minutes under CI=true (SOAK_MINUTES=N sets it
elsewhere; `make soak SOAK_MINUTES=120` for the two hours), the default suite runs a few seconds of it to show the
machinery holds: the agent sends to a real broker, a station process receives, the outbox drains, a plot is drawn."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _require_mosquitto
from tests.footage import under_ci

ROOT = Path(__file__).resolve().parents[2]


def run_soak(tmp_path: Path, minutes: float, *extra: str) -> tuple[int, str, Path]:
    plot = tmp_path / "soak.png"
    done = subprocess.run([sys.executable, "bench/soak.py", "--minutes", str(minutes), "--plot", str(plot), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=minutes * 60 + 300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    return done.returncode, done.stdout + done.stderr, plot


def figure(output: str, name: str) -> str:
    line = next((line for line in output.splitlines() if line.startswith(name)), None)
    assert line is not None, f"no {name!r} line in:\n{output}"
    return line[len(name):].strip()


@pytest.mark.broker
@pytest.mark.slow
def test_a_short_soak_sends_drains_and_plots(tmp_path):
    _require_mosquitto()
    status, output, plot = run_soak(tmp_path, 0.15, "--every-s", "1", "--warmup-s", "2", "--heartbeat-s", "1")
    depth_max, depth_end = re.match(r"(\d+) / (\d+)", figure(output, "outbox depth max / at the end")).groups()
    assert int(depth_end) == 0, output  # everything reached the broker
    received = int(re.search(r"\((\d+) received", figure(output, "heartbeats at the station")).group(1))
    assert received >= 3, output
    assert plot.read_bytes().startswith(b"\x89PNG"), output
    assert re.search(r"\d+ alarms", output) and " 0 alarms" not in output, output


@pytest.mark.soak
@pytest.mark.broker
@pytest.mark.slow
def test_soak_meets_its_targets(tmp_path):
    # CI runs the ten minutes; elsewhere it waits for SOAK_MINUTES (`make soak` for the two hours)
    minutes = os.environ.get("SOAK_MINUTES") or ("10" if under_ci() else None)
    if not minutes:
        pytest.skip("the soak runs for SOAK_MINUTES (CI: 10): SOAK_MINUTES=10 pytest -m soak")
    _require_mosquitto()
    status, output, _ = run_soak(tmp_path, float(minutes))
    print(output)
    assert status == 0, output  # RSS growth < 5 MB after warm-up, fds and threads flat, drained, heartbeats on time


def test_the_fd_and_thread_figure_sees_a_leak_not_a_transient():
    from bench.soak import floor_growth

    # (seconds, RSS, fds, threads): a clip's file and encoder threads come and go; a sample catches them or not
    swinging = [(t, 100.0, 9 + (t % 3 == 0) * 6, 6 + (t % 4 == 0) * 8) for t in range(0, 600, 5)]
    transient_late = [row if row[0] != 580 else (580, 100.0, 19, 16) for row in swinging]
    assert floor_growth(transient_late, 120, 2) == 0  # one late sample with two extra fds open is not a leak
    assert floor_growth(transient_late, 120, 3) == 0
    leaking = [(t, rss, fds + t // 100, threads) for t, rss, fds, threads in swinging]
    assert floor_growth(leaking, 120, 2) == 2  # one fd every 100 s never closed: 10 at 120-195 s, 12 from 360 s
    assert floor_growth(leaking, 120, 3) == 0
