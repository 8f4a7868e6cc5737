"""The bench's loader of Frigate's motion detector (bench/frigate_motion.py), on small trees laid out like Frigate's:
defaults read from the config source, the detector module executed with stand-ins, the module table left as it was,
and a reason (never a crash) when something is missing. With FRIGATE=path set, also on that real tree."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bench.frigate_motion import FrigateUnavailable, frigate_config, load_detector_class, motion_defaults

CONFIG = '''
from pydantic import Field
from ..base import FrigateBaseModel

class MotionConfig(FrigateBaseModel):
    enabled: bool = Field(default=True, title="Enable")
    threshold: int = Field(default=25, ge=1, le=255)
    lightning_threshold: float = Field(default=0.7)
    skip_motion_threshold: float | None = Field(default=None)
    improve_contrast: bool = Field(default=False)
    contour_area: int | None = Field(default=12)
    delta_alpha: float = Field(default=0.2)
    frame_alpha: float = Field(default=0.02)
    frame_height: int | None = Field(default=90)
    mask: dict = Field(default_factory=dict)
'''

DETECTOR = '''
import cv2
import numpy as np
{extra_import}
from frigate.camera import PTZMetrics
from frigate.config.config import RuntimeMotionConfig
from frigate.motion import MotionDetector
from frigate.util.image import grab_cv2_contours


class ImprovedMotionDetector(MotionDetector):
    def __init__(self, frame_shape, config: RuntimeMotionConfig, fps, ptz_metrics: PTZMetrics | None = None):
        self.config = config
        self.size = (config.frame_height, config.frame_height * frame_shape[1] // frame_shape[0])

    def detect(self, frame):
        small = cv2.resize(frame, (self.size[1], self.size[0]))
        thresh = cv2.threshold(small, self.config.threshold, 255, cv2.THRESH_BINARY)[1]
        contours = grab_cv2_contours(cv2.findContours(thresh, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE))
        return [cv2.boundingRect(c) for c in contours]

    def is_calibrating(self):
        return False

    def update_mask(self):
        pass

    def stop(self):
        pass
'''

BASE = '''
from abc import ABC, abstractmethod
from frigate.config import MotionConfig


class MotionDetector(ABC):
    @abstractmethod
    def detect(self, frame):
        pass
'''

IMAGE = '''
import cv2
from unidecode import unidecode  # the real file's imports need the whole app: only the function is taken


def grab_cv2_contours(cnts):
    if len(cnts) == 2:
        return cnts[0]
    elif len(cnts) == 3:
        return cnts[1]
'''


def tree(root: Path, extra_import: str = "") -> Path:
    files = {"frigate/config/camera/motion.py": CONFIG, "frigate/motion/__init__.py": BASE,
             "frigate/util/image.py": IMAGE,
             "frigate/motion/improved_motion.py": DETECTOR.format(extra_import=extra_import)}
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_defaults_come_from_the_trees_config_source(tmp_path):
    defaults = motion_defaults(tree(tmp_path))
    assert defaults["threshold"] == 25 and defaults["frame_height"] == 90 and defaults["contour_area"] == 12
    assert defaults["skip_motion_threshold"] is None and defaults["improve_contrast"] is False
    config = frigate_config(tmp_path, (72, 128))
    assert config.rasterized_mask.shape == (72, 128) and int(config.rasterized_mask.min()) == 255  # no mask


def test_detector_runs_from_the_tree_and_the_module_table_is_restored(tmp_path):
    before = {name for name in sys.modules if name.startswith("frigate")}
    detector_class = load_detector_class(tree(tmp_path))
    assert {name for name in sys.modules if name.startswith("frigate")} == before
    assert detector_class.__mro__[1].__name__ == "MotionDetector"  # the tree's own base class
    frame = np.zeros((720, 1280), np.uint8)
    frame[300:500, 600:700] = 200
    detector = detector_class(frame.shape, frigate_config(tmp_path, frame.shape), 10)
    boxes = detector.detect(frame)
    assert len(boxes) == 1 and boxes[0][3] > 10, "the bright block is found at the tree's 90 px height"


def test_missing_parts_give_a_reason(tmp_path):
    with pytest.raises(FrigateUnavailable, match="improved_motion.py"):
        load_detector_class(tmp_path / "nowhere")
    with pytest.raises(FrigateUnavailable, match="needs not_a_module_here"):
        load_detector_class(tree(tmp_path, "import not_a_module_here"))
    (tmp_path / "frigate/config/camera/motion.py").write_text("class MotionConfig:\n    threshold: int = 30\n")
    with pytest.raises(FrigateUnavailable, match="no default for enabled"):
        motion_defaults(tmp_path)


@pytest.mark.skipif(not os.environ.get("FRIGATE"), reason="FRIGATE=path (a Frigate source tree) not given")
def test_real_frigate_tree_loads():
    pytest.importorskip("scipy")
    root = Path(os.environ["FRIGATE"])
    detector_class = load_detector_class(root)
    frame = np.full((720, 1280), 90, np.uint8)
    detector = detector_class(frame.shape, frigate_config(root, frame.shape), 10)
    for _ in range(40):  # its average starts at 0: it learns the scene first
        detector.detect(frame)
    assert detector.detect(frame) == []
    frame[300:500, 600:700] = 200
    assert len(detector.detect(frame)) == 1, "a bright block on a learnt scene is motion"
