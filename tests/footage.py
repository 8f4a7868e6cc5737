"""Where the real third-party footage lives (../shared/data beside the project), and how tests ask for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require_footage(relative: str = "") -> Path:
    """The path of a footage file or folder; skip when absent, but fail under CI so a wrong path cannot hide it."""
    path = SHARED_DATA / relative
    if path.exists():
        return path
    message = f"real footage not found at {path} (../shared/data beside the project root)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; CI=true requires it")
    pytest.skip(message)
