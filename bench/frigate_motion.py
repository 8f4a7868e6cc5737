"""Frigate's default motion detector (frigate/motion/improved_motion.py, ImprovedMotionDetector) loaded from a Frigate
source tree the user points to (`make bench FRIGATE=path`), in this process, for the side-by-side detector row.

Nothing of Frigate is copied into the project: the module is executed from the user's tree. Its imports would pull in
the whole Frigate app (config models, camera metrics, image utilities), so only the names it imports are stood in
for: PTZMetrics is a placeholder type (we pass None: no PTZ), the MotionDetector base is the tree's own ABC from
frigate/motion/__init__.py (a plain base if that cannot load), grab_cv2_contours is the tree's own function compiled
from frigate/util/image.py, and the config is Frigate's own defaults read from frigate/config/camera/motion.py.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

from common.errors import AgentError

MOTION_FILE = Path("frigate/motion/improved_motion.py")
BASE_FILE = Path("frigate/motion/__init__.py")
IMAGE_FILE = Path("frigate/util/image.py")
CONFIG_FILE = Path("frigate/config/camera/motion.py")
#: the MotionConfig fields improved_motion.py reads (mask is turned into rasterized_mask below)
CONFIG_FIELDS = ("enabled", "threshold", "contour_area", "lightning_threshold", "improve_contrast", "frame_height",
                 "frame_alpha", "delta_alpha", "skip_motion_threshold")


class FrigateUnavailable(AgentError):
    """The Frigate tree or one of its parts (or scipy, which its detector needs) is missing: the row is skipped."""


def motion_defaults(tree: Path) -> dict:
    """The Field(default=...) values of Frigate's MotionConfig, read from the tree without importing it."""
    source = _read(tree, CONFIG_FILE)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "MotionConfig":
            defaults = {}
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    default = _field_default(item.value)
                    if default is not _MISSING:
                        defaults[item.target.id] = default
            missing = [name for name in CONFIG_FIELDS if name not in defaults]
            if missing:
                raise FrigateUnavailable(f"{CONFIG_FILE} has no default for {', '.join(missing)}")
            return {name: defaults[name] for name in CONFIG_FIELDS}
    raise FrigateUnavailable(f"no MotionConfig class in {tree / CONFIG_FILE}")


def frigate_config(tree: Path, frame_shape: tuple[int, int]) -> types.SimpleNamespace:
    """A config object with Frigate's defaults and no mask (rasterized_mask all 255, as Frigate builds it)."""
    config = types.SimpleNamespace(**motion_defaults(tree))
    config.rasterized_mask = np.full(frame_shape, 255, np.uint8)
    return config


def load_detector_class(tree: Path) -> type:
    """ImprovedMotionDetector, executed from `tree` with stand-ins for the rest of Frigate."""
    tree = Path(tree)
    if not (tree / MOTION_FILE).is_file():
        raise FrigateUnavailable(f"{tree / MOTION_FILE} not found (FRIGATE must be a Frigate source tree)")
    saved = {name: module for name, module in sys.modules.items() if name == "frigate" or name.startswith("frigate.")}
    try:
        _stand_ins(tree)
        try:
            module = _exec_file(tree / MOTION_FILE, "frigate.motion.improved_motion")
        except ModuleNotFoundError as error:
            # scipy (its gaussian_filter) is the one third-party module it needs beyond ours: the `bench` extra
            raise FrigateUnavailable(f"{MOTION_FILE} needs {error.name}, not installed "
                                     "(pip install -e '.[bench]')") from error
        return module.ImprovedMotionDetector
    finally:
        # the loaded class keeps its own globals; the process's module table goes back to what it was
        for name in [n for n in sys.modules if n == "frigate" or n.startswith("frigate.")]:
            del sys.modules[name]
        sys.modules.update(saved)


def _stand_ins(tree: Path) -> None:
    class PTZMetrics:
        """Placeholder: improved_motion only names it in a type hint; the bench passes ptz_metrics=None."""

    class RuntimeMotionConfig(types.SimpleNamespace):
        """Placeholder for the type hint; the instance passed is frigate_config()."""

    _module("frigate", package=True)
    _module("frigate.camera", PTZMetrics=PTZMetrics)
    _module("frigate.config", package=True, MotionConfig=RuntimeMotionConfig)
    _module("frigate.config.config", RuntimeMotionConfig=RuntimeMotionConfig)
    _module("frigate.util", package=True)
    _module("frigate.util.image", grab_cv2_contours=_tree_function(tree, IMAGE_FILE, "grab_cv2_contours"))
    try:
        _exec_file(tree / BASE_FILE, "frigate.motion", package=True)
    except Exception:  # noqa: BLE001  (a tree whose base pulls in more than we stand in for: a plain base will do)
        _module("frigate.motion", package=True, MotionDetector=type("MotionDetector", (), {}))


def _module(name: str, package: bool = False, **names) -> types.ModuleType:
    module = types.ModuleType(name)
    if package:
        module.__path__ = []  # a package with no submodules on disk: only the stand-ins we register resolve
    module.__dict__.update(names)
    sys.modules[name] = module
    return module


def _exec_file(path: Path, name: str, package: bool = False) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=[] if package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _tree_function(tree: Path, relative: Path, name: str):
    """One top-level function of a tree file, compiled alone (the file's own imports need the whole app)."""
    source = _read(tree, relative)
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            namespace: dict = {}
            exec(compile(ast.Module(body=[node], type_ignores=[]), str(tree / relative), "exec"), namespace)
            return namespace[name]
    raise FrigateUnavailable(f"no {name}() in {tree / relative}")


def _read(tree: Path, relative: Path) -> str:
    path = Path(tree) / relative
    if not path.is_file():
        raise FrigateUnavailable(f"{path} not found")
    return path.read_text(encoding="utf-8")


_MISSING = object()


def _field_default(value: ast.expr | None):
    """The literal default of `name: type = Field(default=...)` or `name: type = literal`, else _MISSING."""
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "Field":
        for keyword in value.keywords:
            if keyword.arg == "default":
                return _literal(keyword.value)
        return _MISSING
    return _literal(value) if value is not None else _MISSING


def _literal(node: ast.expr):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return _MISSING
