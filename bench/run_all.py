"""`make bench`: run every benchmark script in bench/, then print one table (row, target, figure as
min / median / max of the repetitions, verdict) and write it as JSON to build/bench.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.rows import PI_ASSUMPTION, ROWS_ENV, format_figures  # noqa: E402

ORDER = ["bench_detector.py", "bench_panorama.py", "bench_encoder.py", "bench_realtime.py", "bench_pipeline.py",
         "bench_latency.py", "bench_clip_delivery.py", "bench_uplink.py"]
OUTPUT = HERE.parent / "build" / "bench.json"


def run_scripts(rows_file: Path) -> list[str]:
    scripts = [HERE / name for name in ORDER if (HERE / name).exists()]
    scripts += sorted(p for p in HERE.glob("bench_*.py") if p.name not in ORDER)
    failed = []
    env = dict(os.environ, **{ROWS_ENV: str(rows_file)})
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, env=env)
        if result.returncode != 0:
            failed.append(script.name)
        print(f"({time.perf_counter() - started:.1f} s)", flush=True)
    return failed


def table(rows: list[dict]) -> str:
    cells = [("row", "target", "figure (min / median / max)", "verdict", "Pi 4 estimate")]
    cells += [(r["row"], r["target"], format_figures(r), r["verdict"], r.get("pi_estimate", "")) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(5)]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def main() -> int:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as work:
        rows_file = Path(work) / "rows.jsonl"
        rows_file.touch()
        failed = run_scripts(rows_file)
        rows = [json.loads(line) for line in rows_file.read_text().splitlines() if line.strip()]
    # the machine's load says how far to trust the CPU and real-time rows: on a shared machine they are noisy
    load = {"before": load_before, "after": os.getloadavg()[0], "cores": os.cpu_count()}
    print("\n" + table(rows) + "\n" + PI_ASSUMPTION)
    print(f"load average {load['before']:.1f} before, {load['after']:.1f} after, on {load['cores']} cores: "
          "CPU and real-time rows taken under load are noisy")
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps({"rows": rows, "pi_assumption": PI_ASSUMPTION, "load_average": load,
                                  "failed_scripts": failed}, indent=2) + "\n")
    print(f"\nwritten to {OUTPUT}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
