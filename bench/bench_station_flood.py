"""The station's media reassembly under a hostile flood (station/media_assembly.py), in this process: the memory
it holds stays within its own bound whatever the publisher sends, and a genuine file still assembles at speed.

Run: .venv/bin/python bench/bench_station_flood.py [--flood-mb M] [--held-mb H] [--reps N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.rows import emit  # noqa: E402
from station.media_assembly import MIB, MediaAssembler, MediaLimits  # noqa: E402

CHUNK = 256 * 1024


def flood(limits: MediaLimits, flood_mb: int) -> tuple[float, int]:
    """(peak MiB traced while flooding, refusals): chunks for many files that never finish, parts past the end,
    oversized chunks, all of it more than the bound."""
    problems: list[str] = []
    assembler = MediaAssembler(None, problems.append, lambda *args, **fields: None, limits)
    piece = bytearray(os.urandom(CHUNK))  # bytes(piece): a new object each time, as paho hands each one over
    tracemalloc.start()
    for n in range(flood_mb * MIB // CHUNK):
        key = ("hostile", f"e{n // 3}", "clip.mp4")
        if n % 3 == 0:
            assembler.manifest(key, {"event_id": key[1], "name": "clip.mp4", "content_type": "video/mp4",
                                     "total_bytes": 64 * MIB, "chunk_bytes": CHUNK, "chunks": 256,
                                     "sha256": "0" * 64})
        assembler.chunk(key, str(n % 3 if n % 7 else 10**6), bytes(piece))
    peak = tracemalloc.get_traced_memory()[1] / MIB
    tracemalloc.stop()
    return peak, sum(assembler.refused.values())


def genuine(limits: MediaLimits, size_mb: int) -> float:
    """MB/s to assemble and check one genuine file held in memory."""
    data = os.urandom(size_mb * MIB)
    assembler = MediaAssembler(None, lambda text: None, lambda *args, **fields: None, limits)
    key = ("unit", "e", "clip.mp4")
    started = time.perf_counter()
    assembler.manifest(key, {"event_id": "e", "name": "clip.mp4", "content_type": "video/mp4",
                             "total_bytes": len(data), "chunk_bytes": CHUNK, "chunks": -(-len(data) // CHUNK),
                             "sha256": hashlib.sha256(data).hexdigest()})
    for index in range(0, len(data), CHUNK):
        assembler.chunk(key, str(index // CHUNK), data[index:index + CHUNK])
    elapsed = time.perf_counter() - started
    assert assembler.media[("e", "clip.mp4")].verified
    return size_mb / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flood-mb", type=int, default=256)
    parser.add_argument("--held-mb", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    limits = MediaLimits(max_held_bytes=args.held_mb * MIB, max_open=10_000)  # the byte bound binds, not the count
    peaks, refusals = [], 0
    for _ in range(args.reps):
        peak, refusals = flood(limits, args.flood_mb)
        peaks.append(peak)
    bound = args.held_mb + 2 * CHUNK / MIB  # what is held, the chunk arriving and the one it replaces
    emit(f"station: memory held under a {args.flood_mb} MiB hostile media flood", f"<= {bound:.1f} MiB "
         f"(max_held_bytes {args.held_mb} MiB + 2 chunks)", peaks, "MiB", max(peaks) <= bound,
         note=f"{refusals} refusals a run", pi="n/a (the station runs on a server, not the unit)")
    rates = [genuine(MediaLimits(), 64) for _ in range(args.reps)]
    emit("station: a genuine 64 MiB clip reassembled and checked", ">= 20 MB/s (several 4G uplinks)", rates, "MB/s",
         min(rates) >= 20, pi="n/a (the station runs on a server, not the unit)")


if __name__ == "__main__":
    main()
