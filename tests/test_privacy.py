"""Privacy zones are black in the recorded snapshot and clip, whatever the recording size."""

import av
import cv2
import numpy as np

from agent.config import parse_config
from agent.pipeline import Agent
from agent.privacy import PrivacyFilter
from common.clock import ManualClock
from drivers.camera.replay import ReplayCamera
from models.zones import ZoneSettings

NEIGHBOUR_WINDOW = ZoneSettings(name="neighbour", kind="privacy", polygon=((0.7, 0.0), (1.0, 0.0), (1.0, 0.3),
                                                                            (0.7, 0.3)))


def test_filter_blanks_the_zone_at_any_size_and_leaves_the_original_alone():
    privacy = PrivacyFilter((NEIGHBOUR_WINDOW,))
    for shape in ((180, 320, 3), (720, 1280, 3)):
        image = np.full(shape, 200, np.uint8)
        blanked = privacy.apply(image)
        height, width = shape[:2]
        assert blanked[int(height * 0.1), int(width * 0.9)].max() == 0
        assert blanked[int(height * 0.6), int(width * 0.3)].min() == 200
        assert image.min() == 200


def test_privacy_zone_is_black_in_snapshot_and_clip(tmp_path):
    from evaluation.demo import write_demo

    clip = tmp_path / "walk.mp4"
    write_demo(clip, seconds=14.0, width=320, height=180)
    config = parse_config({"data_dir": str(tmp_path / "data"), "recorder": {"post_roll_s": 1.0},
                           "detection": {"zones": [NEIGHBOUR_WINDOW.model_dump()]}})
    clock = ManualClock()
    summary = Agent(config, ReplayCamera(clip, clock=clock), clock, upload=False).run()
    start = next(e for e in summary.events_published if e["kind"] == "intrusion")
    folder = tmp_path / "data" / "media" / start["event_id"]
    snapshot = cv2.imread(str(folder / "snapshot.jpg"))
    assert snapshot[18, 290].max() <= 8  # inside the window: black (JPEG noise aside)
    assert snapshot[120, 60].mean() > 40  # the yard is still there
    with av.open(str(folder / "clip.mp4")) as container:
        windows = [frame.to_ndarray(format="bgr24")[10:45, 235:315].mean() for frame in container.decode(video=0)]
    assert len(windows) >= 50  # 5 s of pre-roll alone at 10 fps
    assert max(windows) < 8
