"""Where the real third-party footage lives (../shared/data beside the project), and how tests ask for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def under_ci() -> bool:
    """CI sets CI=true; there a missing prerequisite is a failure, never a skip."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_footage(relative: str = "") -> Path:
    """The path of a footage file or folder; skip when absent, but fail under CI so a wrong path cannot hide it."""
    path = SHARED_DATA / relative
    if path.exists():
        return path
    message = f"real footage not found at {path} (../shared/data beside the project root)"
    if under_ci():
        pytest.fail(message + "; CI=true requires it")
    pytest.skip(message)
