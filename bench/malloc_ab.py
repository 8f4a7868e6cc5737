"""Same-load A/B of glibc malloc settings for the systemd unit (issue 12): which Environment= to give the agent.

Not a `make bench` row: a comparison run by hand when the unit's malloc settings are in question. Each variant's
figures come from fresh processes started with that environment (glibc reads it once, at start), interleaved rep
by rep in a rotating order so that every variant sees the same background load:
- bench_pipeline.py's live and --fast passes: peak RSS (VmHWM), its mapped-file part (RssFile) and the rest
  (anonymous memory, the part malloc settings move), and the child's minor page faults;
- bench_realtime.py's unit and clip runs (WINDOWS windows each): % of one core for decode, detection + engine +
  uplink, the frame loop and the software clip's encode.

Usage: python bench/malloc_ab.py [REPS [VARIANT...]]   (default 5 reps, all variants; one line of JSON per process,
then a summary per variant)
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "fixed 128 KiB": {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "131072"},
    "fixed 1 MiB, trim 2 MiB": {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576",
                                "MALLOC_TRIM_THRESHOLD_": "2097152"},
    "arenas only": {"MALLOC_ARENA_MAX": "2"},
    "fixed 4 MiB, trim 8 MiB": {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "4194304",
                                "MALLOC_TRIM_THRESHOLD_": "8388608"},
    "fixed 4 MiB, trim 128 KiB": {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "4194304"},
    "one arena, fixed 4 MiB, trim 8 MiB": {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "4194304",
                                           "MALLOC_TRIM_THRESHOLD_": "8388608"},
}
MALLOC_KEYS = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
               "GLIBC_TUNABLES")
WINDOWS = 3
REALTIME = f"""
import json, sys, tempfile
from pathlib import Path
import cv2
import bench.bench_realtime as realtime
realtime.REPS = {WINDOWS}
cv2.setNumThreads(1)
with tempfile.TemporaryDirectory() as work:
    shares = realtime.unit_run(Path(work))
    shares["encode"] = realtime.clip_run(Path(work))
print(json.dumps(shares))
"""


def child(argv: list[str], settings: dict[str, str]) -> tuple[dict, int]:
    """Run one measuring process under `settings` only (no malloc setting inherited); its last stdout line is
    JSON. Returns it and the process's minor page faults."""
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_KEYS}
    env.update(settings, PYTHONPATH=str(ROOT))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    out = subprocess.run(argv, check=True, capture_output=True, text=True, env=env, cwd=ROOT).stdout
    faults = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before
    return json.loads(out.strip().splitlines()[-1]), faults


def one_rep(name: str, video: Path, work: Path, rep: int) -> dict:
    settings = VARIANTS[name]
    record: dict = {"variant": name, "rep": rep}
    for mode in ("live", "fast"):
        run, faults = child([sys.executable, str(HERE / "bench_pipeline.py"), mode, str(video),
                             str(work / f"{mode}-{rep}-{len(name)}")], settings)
        record[mode] = {"peak": run["peak_rss_mib"], "file": run["file_mib"],
                        "anon": run["peak_rss_mib"] - run["file_mib"], "fps": run["fps"], "faults": faults}
    shares, faults = child([sys.executable, "-c", REALTIME], settings)
    record["cpu"] = {role: shares[role] for role in ("decode", "engine", "loop", "encode")}
    record["realtime_faults"] = faults
    print(json.dumps(record), flush=True)
    return record


def summary(records: list[dict], names: list[str]) -> None:
    for name in names:
        mine = [r for r in records if r["variant"] == name]
        line = [name + ":"]
        for mode in ("live", "fast"):
            for key in ("peak", "anon", "file"):
                line.append(f"{mode} {key} {statistics.median(r[mode][key] for r in mine):.1f}")
            line.append(f"{mode} faults {statistics.median(r[mode]['faults'] for r in mine):.0f}")
        line.append(f"fast fps {statistics.median(r['fast']['fps'] for r in mine):.1f}")
        for role in ("decode", "engine", "loop", "encode"):
            pooled = [share for r in mine for share in r["cpu"][role]]
            line.append(f"{role} {statistics.median(pooled):.2f} %")
        print(" | ".join(line), flush=True)


def main() -> None:
    from bench.bench_pipeline import write_video

    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    names = sys.argv[2:] or list(VARIANTS)
    records = []
    with tempfile.TemporaryDirectory() as work:
        video = Path(work) / "demo720.mp4"
        write_video(video)
        for rep in range(reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            records += [one_rep(name, video, Path(work), rep) for name in order]
    summary(records, names)


if __name__ == "__main__":
    main()
