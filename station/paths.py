"""Files under the station's `--out` folder: every name from the network made one safe path component."""

from __future__ import annotations

import re
from pathlib import Path


def safe_component(name: str) -> str:
    """One path component made from a network name: no separators, no leading dots, bounded length."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100].lstrip(".")
    return cleaned or "_"


def inside(root: Path, *names: str) -> Path:
    """root/<each name sanitised>, refused (ValueError) if it would still resolve outside root."""
    path = root.joinpath(*(safe_component(name) for name in names))
    if not path.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"refusing to write outside {root}: {path}")
    return path
