"""Soak: the demo recording replayed in a loop through one Agent at full speed, for SOAK_MINUTES.

The agent sends to a mosquitto started on loopback, and a station (`pid-station monitor --json`, its own process)
receives everything, so the outbox must keep draining; heartbeats every --heartbeat-s on the real clock.
Samples the agent process's RSS, open file descriptors, threads and outbox depth every --every-s seconds; reports
their growth after the warm-up (targets: RSS < 5 MB, fds and threads flat), the outbox's depth and whether it
drained, and the heartbeat intervals the station saw; plots the samples to build/soak.png.

Run: SOAK_MINUTES=10 .venv/bin/python bench/soak.py [--every-s 5] [--warmup-s 60] [--plot build/soak.png]
     [--offline: no broker, everything stays in the outbox]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import parse_config  # noqa: E402
from agent.pipeline import Agent  # noqa: E402
from common.clock import SystemClock  # noqa: E402
from drivers.camera.base import Camera, Frame  # noqa: E402
from drivers.camera.replay import ReplayCamera  # noqa: E402
from evaluation.demo import write_demo  # noqa: E402
from tests.conftest import Broker  # noqa: E402

RSS_TARGET_MB = 5.0


class LoopingReplay(Camera):
    """The recording played again and again until the deadline, frame times running on across passes (one long
    recording to the Agent, so its recorder, outbox and events see hours of footage, not many short runs)."""

    def __init__(self, source: Path, clock: SystemClock, deadline: float) -> None:
        self._source, self._clock, self._deadline = source, clock, deadline
        self.passes = 0

    def open(self) -> None:
        probe = ReplayCamera(self._source, clock=self._clock)
        probe.open()
        self.fps = probe.fps
        probe.close()

    def frames(self) -> Iterator[Frame]:
        index = 0
        while time.monotonic() < self._deadline:  # the soak's length on the real clock: a bench, not a test
            with ReplayCamera(self._source, clock=self._clock) as camera:
                for frame in camera.frames():
                    yield Frame(ts=index / self.fps, index=index, image=frame.image, luma=frame.luma)
                    index += 1
            self.passes += 1

    def close(self) -> None:
        pass


def sample(outbox_depth) -> tuple[float, int, int, int]:
    """(RSS in MB, open fds, threads) of this process, from /proc, and the agent's outbox depth."""
    with open("/proc/self/status", encoding="ascii") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return rss_kb / 1024, len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task")), outbox_depth()


def sampler(samples: list, every_s: float, stop: threading.Event, outbox_depth) -> None:
    started = time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - started, *sample(outbox_depth)))
        stop.wait(every_s)


def growth(samples: list, warmup_s: float, column: int) -> float:
    """How much a figure grew after the warm-up: the median of the last fifth of the samples less that of the
    first fifth (medians: a clip being encoded at one sample is not a leak)."""
    after = [row[column] for row in samples if row[0] >= warmup_s]
    if len(after) < 2:
        return float("nan")
    fifth = max(1, len(after) // 5)
    return statistics.median(after[-fifth:]) - statistics.median(after[:fifth])


def floor_growth(samples: list, warmup_s: float, column: int) -> float:
    """For counts that swing with the work (fds, threads: a clip's file and its encoder's threads come and go): how
    much the lowest value of the second half after warm-up exceeds that of the first half. A leaked fd or thread
    stays open, so it lifts every later sample, the lowest too; one that happened to be open at one sample does not.
    (The highest values compared the transient ones caught by chance: the CI run at b65e13a failed on 1.)"""
    after = [row[column] for row in samples if row[0] >= warmup_s]
    if len(after) < 2:
        return float("nan")
    half = len(after) // 2
    return min(after[half:]) - min(after[:half])


class Station:
    """`pid-station monitor --json` in its own process (not in the figures measured), noting heartbeats as they come."""

    def __init__(self, url: str, device_id: str, folder: Path) -> None:
        command = [sys.executable, "-m", "station", "monitor", "--broker", url, "--device", device_id, "--json",
                   "--clean-session"]
        self.heartbeats: list[float] = []  # the unit's own time of each heartbeat received (epoch seconds)
        self.events = 0
        self._process = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
                                         stderr=(folder / "station.log").open("w"), text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if message.get("kind") == "heartbeat":
                stamp = message["payload"]["ts"]
                self.heartbeats.append(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp())
            elif message.get("kind") == "event":
                self.events += 1

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)
        self._reader.join(timeout=10)


def plot(samples: list, warmup_s: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    minutes = [row[0] / 60 for row in samples]
    labels = ("RSS (MB)", "open fds", "threads", "outbox depth (rows)")
    figure, axes = plt.subplots(len(labels), 1, sharex=True, figsize=(8, 9))
    for axis, column, label in zip(axes, range(1, len(labels) + 1), labels, strict=True):
        axis.plot(minutes, [row[column] for row in samples])
        axis.axvline(warmup_s / 60, color="grey", linestyle="--")
        axis.set_ylabel(label)
    axes[-1].set_xlabel("minutes (dashed: end of warm-up)")
    figure.suptitle("pid-agent soak: demo replayed in a loop at full speed, sending to a local broker")
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "10")))
    parser.add_argument("--every-s", type=float, default=5.0)
    parser.add_argument("--warmup-s", type=float, help="default: a fifth of the run, at most 120 s")
    parser.add_argument("--heartbeat-s", type=float, default=10.0, help="the unit's heartbeat interval here")
    parser.add_argument("--plot", type=Path, default=Path("build/soak.png"))
    parser.add_argument("--offline", action="store_true", help="no broker: everything stays in the outbox")
    args = parser.parse_args()
    warmup_s = args.warmup_s if args.warmup_s is not None else min(120.0, args.minutes * 60 / 5)
    folder = Path(tempfile.mkdtemp(prefix="soak-"))
    demo = folder / "demo.mp4"
    write_demo(demo)
    broker = station = None
    settings = {"device_id": "pid-soak", "data_dir": str(folder / "data"),
                "heartbeat": {"interval_s": args.heartbeat_s}}
    if not args.offline:
        (folder / "broker").mkdir()
        broker = Broker(folder / "broker")
        broker.start()
        settings["broker"] = {"url": broker.url}
        station = Station(broker.url, "pid-soak", folder)
    try:
        summary, camera, samples = soak(parse_config(settings), demo, args, not args.offline)
    finally:
        if station is not None:
            time.sleep(2)  # the last messages reach the station process (a bench, not a test)
            station.stop()
        if broker is not None:
            broker.stop()
    plot(samples, warmup_s, args.plot)
    rss = growth(samples, warmup_s, 1)
    fds, threads = (floor_growth(samples, warmup_s, column) for column in (2, 3))
    footage_h = summary.frames / camera.fps / 3600
    print(f"soak: {args.minutes:.1f} min, {camera.passes} passes of the demo = {footage_h:.2f} h of footage, "
          f"{summary.frames} frames, {summary.alarms} alarms, {len(samples)} samples; plot {args.plot}")
    peak = max(row[1] for row in samples)
    print(f"{'figure':<40} {'measured':>14}  target")
    print(f"{'RSS growth after warm-up':<40} {rss:>11.2f} MB  < {RSS_TARGET_MB} MB (peak {peak:.0f} MB)")
    print(f"{'open fds: floor growth after warm-up':<40} {fds:>14.0f}  flat ({min(r[2] for r in samples)}-"
          f"{max(r[2] for r in samples)})")
    print(f"{'threads: floor growth after warm-up':<40} {threads:>14.0f}  flat ({min(r[3] for r in samples)}-"
          f"{max(r[3] for r in samples)})")
    ok = rss < RSS_TARGET_MB and fds < 1 and threads < 1
    if station is not None:
        depth_max = max(row[4] for row in samples)
        print(f"{'outbox depth max / at the end':<40} {depth_max:>7} / {summary.outbox_depth:<4}  "
              "drains (0 at the end)")
        beats = sorted(set(station.heartbeats))  # a resent heartbeat is not a short interval
        gaps = [later - earlier for earlier, later in zip(beats, beats[1:], strict=False)]
        shown = (f"{min(gaps):.1f}-{max(gaps):.1f} s" if gaps else "none")
        print(f"{'heartbeats at the station, interval':<40} {shown:>14}  {args.heartbeat_s:.0f} s "
              f"({len(beats)} received, {station.events} events)")
        ok = ok and summary.outbox_depth == 0 and bool(gaps) and max(gaps) < args.heartbeat_s + 2.0
    return 0 if ok else 1


def soak(config, demo: Path, args, upload: bool):
    clock = SystemClock()
    camera = LoopingReplay(demo, clock, time.monotonic() + args.minutes * 60)
    agent = Agent(config, camera, clock, upload=upload, drain_timeout_s=120)
    samples: list[tuple[float, float, int, int, int]] = []
    stop = threading.Event()
    depth = lambda: agent.outbox.depth() if getattr(agent, "outbox", None) is not None else 0
    watcher = threading.Thread(target=sampler, args=(samples, args.every_s, stop, depth), daemon=True)
    watcher.start()
    summary = agent.run()
    stop.set()
    watcher.join()  # no sample after run(): the agent has shut its threads and files, not a figure of the soak
    return summary, camera, samples


if __name__ == "__main__":
    sys.exit(main())
