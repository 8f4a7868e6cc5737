"""How much of a process's RSS the filesystem's page-cache folio size decides (README, Memory).

Runs one cv2 workload twice in fresh processes: with cv2 loaded from the venv (on this machine ext4, which has
large page-cache folios since Linux 6.16: a fault maps the whole folio) and with the same cv2 files copied to a
tmpfs under /dev/shm (page-sized folios). Prints each run's RSS split. Not a `make bench` row: it explains one.
Usage: .venv/bin/python bench/library_rss.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WORKLOAD = r"""
import json, sys
if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])
import numpy as np
import cv2
image = np.random.default_rng(1).integers(0, 256, (720, 1280), np.uint8)
for _ in range(20):
    small = cv2.resize(image, (320, 180), interpolation=cv2.INTER_AREA)
    cv2.GaussianBlur(small, (5, 5), 0)
    cv2.findContours((small > 128).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.imencode(".jpg", image)
    cv2.HOGDescriptor()
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({"file": cv2.__file__, **{key: int(status[key].split()[0]) / 1024
                                          for key in ("VmRSS", "RssAnon", "RssFile", "RssShmem")}}))
"""


def run(extra_path: str | None) -> dict:
    args = [sys.executable, "-c", WORKLOAD] + ([extra_path] if extra_path else [])
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    import cv2

    package = Path(cv2.__file__).parent
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        # cv2 and the shared libraries its wheel bundles beside it (opencv_python_headless.libs)
        for source in (package, *package.parent.glob("opencv_python*.libs")):
            shutil.copytree(source, Path(shm) / source.name)
        for label, extra in (("venv", None), ("tmpfs copy", shm)):
            figures = run(extra)
            print(f"{label:10} RSS {figures['VmRSS']:6.1f} MiB = anon {figures['RssAnon']:5.1f} + files "
                  f"{figures['RssFile']:5.1f} + shmem {figures['RssShmem']:5.1f}  ({figures['file']})")


if __name__ == "__main__":
    main()
