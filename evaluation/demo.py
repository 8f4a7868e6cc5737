"""The bundled demo recording: the synthetic yard scene written to an MP4, so `make run` needs no footage."""

from __future__ import annotations

from pathlib import Path

from agent.config import RecorderSettings
from agent.storage.encoding import ClipWriter
from common.clock import ManualClock
from drivers.camera.synthetic import SyntheticCamera


def write_demo(path: Path, seconds: float = 30.0, fps: float = 10.0, width: int = 640, height: int = 360) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    camera = SyntheticCamera(clock=ManualClock(), width=width, height=height, fps=fps, duration_s=seconds)
    writer = ClipWriter(path, RecorderSettings(qp=20), fps, width, height)
    with camera:
        for frame in camera.frames():
            writer.add(frame.ts, frame.image)
    writer.close()
    return camera.frame_count
