"""Soak: the demo recording replayed in a loop through one Agent at full speed (offline), for SOAK_MINUTES.

Samples the process's RSS, open file descriptors and threads every --every-s seconds; reports their growth after
the warm-up (target: RSS < 5 MB, fds and threads flat) and plots them to build/soak.png.

Run: SOAK_MINUTES=10 .venv/bin/python bench/soak.py [--every-s 5] [--warmup-s 60] [--plot build/soak.png]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import parse_config  # noqa: E402
from agent.pipeline import Agent  # noqa: E402
from common.clock import SystemClock  # noqa: E402
from drivers.camera.base import Camera, Frame  # noqa: E402
from drivers.camera.replay import ReplayCamera  # noqa: E402
from evaluation.demo import write_demo  # noqa: E402

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


def sample() -> tuple[float, int, int]:
    """(RSS in MB, open fds, threads) of this process, from /proc."""
    with open("/proc/self/status", encoding="ascii") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return rss_kb / 1024, len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task"))


def sampler(samples: list[tuple[float, float, int, int]], every_s: float, stop: threading.Event) -> None:
    started = time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - started, *sample()))
        stop.wait(every_s)


def growth(samples: list, warmup_s: float, column: int) -> float:
    after = [row[column] for row in samples if row[0] >= warmup_s]
    if len(after) < 2:
        return float("nan")
    head, tail = after[: max(1, len(after) // 10)], after[-max(1, len(after) // 10):]
    return sum(tail) / len(tail) - sum(head) / len(head)  # mean of the last tenth minus the first (noise-proof)


def plot(samples: list, warmup_s: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    minutes = [row[0] / 60 for row in samples]
    figure, axes = plt.subplots(3, 1, sharex=True, figsize=(8, 7))
    for axis, column, label in zip(axes, (1, 2, 3), ("RSS (MB)", "open fds", "threads"), strict=True):
        axis.plot(minutes, [row[column] for row in samples])
        axis.axvline(warmup_s / 60, color="grey", linestyle="--")
        axis.set_ylabel(label)
    axes[-1].set_xlabel("minutes (dashed: end of warm-up)")
    figure.suptitle("pid-agent soak: demo replayed in a loop, offline, full speed")
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "10")))
    parser.add_argument("--every-s", type=float, default=5.0)
    parser.add_argument("--warmup-s", type=float, help="default: a fifth of the run, at most 120 s")
    parser.add_argument("--plot", type=Path, default=Path("build/soak.png"))
    args = parser.parse_args()
    warmup_s = args.warmup_s if args.warmup_s is not None else min(120.0, args.minutes * 60 / 5)
    folder = Path(tempfile.mkdtemp(prefix="soak-"))
    demo = folder / "demo.mp4"
    write_demo(demo)
    config = parse_config({"device_id": "pid-soak", "data_dir": str(folder / "data")})
    clock = SystemClock()
    camera = LoopingReplay(demo, clock, time.monotonic() + args.minutes * 60)
    agent = Agent(config, camera, clock, upload=False)
    samples: list[tuple[float, float, int, int]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=sampler, args=(samples, args.every_s, stop), daemon=True)
    watcher.start()
    summary = agent.run()
    stop.set()
    watcher.join()  # no sample after run(): the agent has shut its threads and files, not a figure of the soak
    plot(samples, warmup_s, args.plot)
    rss, fds, threads = (growth(samples, warmup_s, column) for column in (1, 2, 3))
    footage_h = summary.frames / camera.fps / 3600
    print(f"soak: {args.minutes:.1f} min, {camera.passes} passes of the demo = {footage_h:.2f} h of footage, "
          f"{summary.frames} frames, {summary.alarms} alarms, {len(samples)} samples; plot {args.plot}")
    peak = max(row[1] for row in samples)
    print(f"{'figure':<36} {'measured':>12}  target")
    print(f"{'RSS growth after warm-up':<36} {rss:>9.2f} MB  < {RSS_TARGET_MB} MB (peak {peak:.0f} MB)")
    print(f"{'open fds growth after warm-up':<36} {fds:>12.1f}  flat")
    print(f"{'threads growth after warm-up':<36} {threads:>12.1f}  flat")
    return 0 if rss < RSS_TARGET_MB and fds < 1 and threads < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
