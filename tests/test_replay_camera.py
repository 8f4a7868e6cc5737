"""Replay camera on generated files: natural order, timing from index / fps, clear errors."""

import cv2
import numpy as np
import pytest

from agent.config import AgentConfig, CameraSettings
from common.clock import ManualClock
from common.errors import SourceError
from drivers.camera import open_camera
from drivers.camera.replay import _TV_TO_FULL, ReplayCamera, natural_key, tv_to_full


def write_images(folder, count):
    for index in range(count):
        image = np.full((48, 64, 3), index * 10, np.uint8)
        cv2.imwrite(str(folder / f"f{index}.png"), image)


def test_image_folder_plays_in_natural_order_with_index_time(tmp_path):
    write_images(tmp_path, 12)
    with ReplayCamera(str(tmp_path), clock=ManualClock(), fps=4.0, detect_width=32) as camera:
        frames = list(camera.frames())
    assert [f.index for f in frames] == list(range(12))
    assert [int(f.image[0, 0, 0]) for f in frames] == [i * 10 for i in range(12)]  # f10 after f9
    assert frames[5].ts == pytest.approx(1.25)
    assert frames[0].luma.shape == (24, 32)


def test_glob_source(tmp_path):
    write_images(tmp_path, 3)
    with ReplayCamera(str(tmp_path / "f*.png"), clock=ManualClock(), fps=1.0) as camera:
        assert camera.frame_count == 3


def test_natural_key_orders_numbers():
    assert sorted(["in10.jpg", "in9.jpg", "in100.jpg"], key=natural_key) == ["in9.jpg", "in10.jpg", "in100.jpg"]


def test_realtime_pacing_waits_until_each_frame_is_due(tmp_path):
    write_images(tmp_path, 5)
    clock = ManualClock(monotonic_start=100.0)  # moves only when the camera waits on it
    with ReplayCamera(str(tmp_path), clock=clock, fps=2.0, realtime=True) as camera:
        handed_at = [round(clock.monotonic(), 3) for _ in camera.frames()]
    assert handed_at == [100.0, 100.5, 101.0, 101.5, 102.0]


def test_missing_source_names_the_path(tmp_path):
    with pytest.raises(SourceError, match="nothing-here.mp4"):
        ReplayCamera(str(tmp_path / "nothing-here.mp4"), clock=ManualClock()).open()


def test_corrupt_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    with pytest.raises(SourceError, match="broken.mp4"):
        camera = ReplayCamera(str(bad), clock=ManualClock())
        camera.open()
        list(camera.frames())


def test_registry_builds_the_configured_backend(tmp_path):
    write_images(tmp_path, 2)
    camera = open_camera(AgentConfig(camera=CameraSettings(backend="replay", source=str(tmp_path), fps=5.0)),
                         ManualClock())
    assert isinstance(camera, ReplayCamera) and camera.fps == 5.0


def test_limited_range_stretch_gives_the_table_for_every_value():
    # a 320x180 image holding every value many times (the vectorised path) and one row of each (the scalar tail)
    values = np.resize(np.arange(256, dtype=np.uint8), (180, 320))
    assert np.array_equal(tv_to_full(values), _TV_TO_FULL[values])
    row = np.arange(256, dtype=np.uint8)[None, :]
    assert np.array_equal(tv_to_full(row), _TV_TO_FULL[row])
    assert _TV_TO_FULL[16] == 0 and _TV_TO_FULL[235] == 255 and _TV_TO_FULL[0] == 0 and _TV_TO_FULL[255] == 255
