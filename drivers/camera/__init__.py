"""Camera backends behind one interface, chosen by config in one place (`open_camera`)."""

from __future__ import annotations

import importlib

from agent.errors import ConfigError
from drivers.camera.base import Camera, Frame, make_luma

# name -> "module:Class"; modules are imported only when their backend is chosen, so hardware
# libraries (picamera2) are never needed on a laptop or in CI.
BACKENDS: dict[str, str] = {
    "replay": "drivers.camera.replay:ReplayCamera",
    "synthetic": "drivers.camera.synthetic:SyntheticCamera",
}


def backend_class(name: str) -> type[Camera]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ConfigError(f"camera.backend: unknown backend {name!r} (choose from {', '.join(sorted(BACKENDS))})") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def open_camera(settings) -> Camera:
    """Build the camera that `settings` (agent.config.CameraSettings) asks for. The caller opens it."""
    cls = backend_class(settings.backend)
    if settings.backend == "replay":
        return cls(settings.source, fps=settings.fps, realtime=settings.realtime, detect_width=settings.detect_width)
    if settings.backend == "synthetic":
        return cls(width=settings.width, height=settings.height, fps=settings.fps, duration_s=settings.duration_s,
                   detect_width=settings.detect_width, realtime=settings.realtime)
    return cls(settings)


__all__ = ["BACKENDS", "Camera", "Frame", "backend_class", "make_luma", "open_camera"]
