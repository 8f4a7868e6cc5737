"""The shared libraries' page cache as a booted unit has it, before a memory figure is measured.

How much of a library a process maps resident depends on how its file is held in the page cache. Read with
read() (pip installing and hash-checking it, a copy, a backup, grep), a file on ext4 sits in large folios since
Linux 6.16, and each page fault of a later mmap maps a whole folio: the agent's mapped library files measured
106 MiB after such reads against ~62 MiB when the loader's own faults brought them in (the cv2 workload of
bench/library_rss.py: 52 against 33 MiB). A unit meets its libraries the second way: it boots, and its loader
maps them. So before each measured process the benches drop this environment's shared objects from the page cache
(posix_fadvise DONTNEED: no root needed, and pages some running process still maps stay where they are, which
is why the bench's own parent process does not import them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def library_files() -> list[Path]:
    """The shared objects of this interpreter's environment (the venv's site-packages and the base Python's
    lib-dynload): *.so and versioned *.so.N files."""
    roots = {Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}."
             f"{sys.version_info[1]}" / "lib-dynload"}
    found = set()
    for root in roots:
        if root.is_dir():
            found.update(path for path in root.rglob("*.so*")
                         if path.is_file() and (path.suffix == ".so" or ".so." in path.name))
    return sorted(found)


def drop_from_page_cache(paths: list[Path]) -> int:
    """Ask the kernel to drop each file's clean cached pages; returns how many files were asked (the bench row's
    note says it, so a run where some could not be opened shows)."""
    asked = 0
    for path in paths:
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # gone or unreadable: nothing of it can be mapped by the next process either
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            asked += 1
        finally:
            os.close(descriptor)
    return asked
