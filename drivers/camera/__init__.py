"""Camera backends behind one interface, chosen by config in one place (`open_camera`)."""

from __future__ import annotations

import importlib

from common.clock import Clock
from common.errors import ConfigError
from drivers.camera.base import Camera, Frame, make_luma

# name -> "module:Class"; modules are imported only when their backend is chosen, and hardware libraries
# (picamera2) only when the camera is opened, so a laptop or CI never needs them.
BACKENDS: dict[str, str] = {
    "replay": "drivers.camera.replay:ReplayCamera",
    "synthetic": "drivers.camera.synthetic:SyntheticCamera",
    "picamera2": "drivers.camera.picam:PiCamera",
    "opencv": "drivers.camera.opencv_capture:OpenCVCamera",
    "multi": "drivers.camera.multi:MultiCamera",
}


def backend_class(name: str) -> type[Camera]:
    try:
        target = BACKENDS[name]
    except KeyError:
        choices = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"camera.backend: unknown backend {name!r} (choose from {choices})") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def open_camera(config, clock: Clock) -> Camera:
    """Build the camera that `config` (agent.config.AgentConfig) asks for, timed by `clock`. The caller opens it."""
    settings = config.camera
    cls = backend_class(settings.backend)
    if settings.backend == "replay":
        return cls(settings.source, clock=clock, fps=settings.fps, realtime=settings.realtime,
                   detect_width=settings.detect_width)
    if settings.backend == "synthetic":
        return cls(clock=clock, width=settings.width, height=settings.height, fps=settings.fps,
                   duration_s=settings.duration_s, detect_width=settings.detect_width, realtime=settings.realtime)
    if settings.backend == "picamera2":
        # the camera's hardware pre-roll (Pi 4 encoder) keeps as much as the recorder would
        return cls(settings, config.picamera2.model_copy(update={"preroll_s": config.recorder.pre_roll_s}))
    if settings.backend == "multi":
        return _multi_camera(config, clock)
    return cls(settings, config.opencv, clock=clock)


def _multi_camera(config, clock: Clock) -> Camera:
    """One camera per [[camera.sources]], in the panorama's camera order (the strip splits the picture so)."""
    by_name = {source.name: source for source in config.camera.sources}
    names = [view.name for view in config.panorama.cameras]
    cameras = []
    for name in names:
        source = by_name[name]
        single = config.camera.model_copy(update={"backend": source.backend, "source": source.source, "sources": ()})
        update = {"camera": single, "picamera2": config.picamera2.model_copy(update={"camera_num": source.camera_num})}
        cameras.append(open_camera(config.model_copy(update=update), clock))
    return backend_class("multi")(cameras, names)


__all__ = ["BACKENDS", "Camera", "Frame", "backend_class", "make_luma", "open_camera"]
