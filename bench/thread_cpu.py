"""CPU time of every thread of this process over a real-time run, sampled from /proc/self/task/<tid>/schedstat
(nanoseconds on a CPU, native threads such as an encoder's own included), so a run's cost can be split by thread:
frame loop, uplink, decoder, clip encoder. A thread is named by its Python thread's name (native_id), else by
its kernel name (comm)."""

from __future__ import annotations

import bisect
import os
import threading
import time
from pathlib import Path

TASKS = Path("/proc/self/task")
PERIOD_S = 0.1


def _cpu_ns(tid: str) -> int | None:
    try:
        return int((TASKS / tid / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # the thread ended between listing and reading


class ThreadCpu:
    """Samples every PERIOD_S in its own thread (which leaves itself out); `between(t0, t1)` is then the CPU seconds
    each thread name spent in that wall-clock window (time.monotonic), summed over threads of the same name."""

    def __init__(self) -> None:
        self._samples: dict[int, list[tuple[float, int]]] = {}
        self._names: dict[int, str] = {}
        self._python: set[int] = set()  # threads Python started (named by it); the rest are a library's own
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def __enter__(self) -> "ThreadCpu":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        own = threading.get_native_id()
        self._names[own] = "bench-sampler"
        while not self._stop.wait(PERIOD_S):
            self.sample()

    def sample(self) -> None:
        now = time.monotonic()
        python = {thread.native_id: thread.name for thread in threading.enumerate()}
        for tid in os.listdir(TASKS):
            cpu = _cpu_ns(tid)
            if cpu is None:
                continue
            number = int(tid)
            if number in python:
                self._python.add(number)
            if number not in self._names:
                self._names[number] = python.get(number) or _comm(tid)
            elif number in python and self._names[number] != python[number]:
                self._names[number] = python[number]  # a thread renamed after it started
            self._samples.setdefault(number, []).append((now, cpu))

    def claim_native(self, existing: set[int], name: str) -> None:
        """Name the library threads (not Python's) started since `existing` was listed after the work that
        started them: e.g. FFmpeg's decoder and pixel-conversion workers, started per frame by the decoder."""
        for tid in self._samples:
            if tid not in existing and tid not in self._python:
                self._names[tid] = name

    def between(self, start: float, end: float) -> dict[str, float]:
        spent: dict[str, float] = {}
        for tid, samples in self._samples.items():
            times = [t for t, _ in samples]
            before = bisect.bisect_right(times, start) - 1
            last = bisect.bisect_right(times, end) - 1
            if last < 0:
                continue
            base = samples[before][1] if before >= 0 else 0  # born inside the window: all its CPU counts
            seconds = (samples[last][1] - base) / 1e9
            if seconds > 0:
                name = self._names[tid]
                spent[name] = spent.get(name, 0.0) + seconds
        return spent


def _comm(tid: str) -> str:
    try:
        return (TASKS / tid / "comm").read_text().strip()
    except OSError:
        return f"tid {tid}"


def native_ids() -> set[int]:
    """The ids of this process's threads now (to tell which ones a library call started)."""
    return {int(tid) for tid in os.listdir(TASKS)}
