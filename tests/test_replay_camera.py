"""Replay camera on generated files: natural order, timing from index / fps, clear errors."""

import av
import cv2
import numpy as np
import pytest

from agent.config import AgentConfig, CameraSettings
from common.clock import ManualClock
from common.errors import SourceError
from drivers.camera import open_camera
from drivers.camera.replay import _TV_TO_FULL, BgrFrames, ReplayCamera, natural_key, tv_to_full
from tests.held_frames import assert_kept_frames_keep_their_pixels


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


def write_clip(path, size=(160, 120), frames=12, pix_fmt="yuv420p", colorspace=None, color_range=None):
    """A real H.264 clip whose every frame differs everywhere (a colour ramp shifted by the index), in the given
    pixel format and colour tags."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if colorspace is not None:
            stream.codec_context.colorspace = colorspace    # the tags the decoder reads back are the stream's
        if color_range is not None:
            stream.codec_context.color_range = color_range
        for index in range(frames):
            image = np.stack([(xs * 3 + index * 20) % 256, (ys * 2 + index * 35) % 256,
                              (xs + ys + index * 50) % 256], axis=2).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format=pix_fmt)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def pyav_bgr(path):
    """Every frame as frame.to_ndarray(format="bgr24") gives it (what the camera yielded before its buffer pool)."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


BT709, MPEG, JPEG = 1, 1, 2   # AVCOL_SPC_BT709, AVCOL_RANGE_MPEG, AVCOL_RANGE_JPEG


@pytest.mark.parametrize("options", [
    {},                                                     # untagged limited range (BT.601), as most footage
    {"colorspace": BT709, "color_range": MPEG},             # tagged BT.709: a different matrix
    {"pix_fmt": "yuvj420p", "color_range": JPEG},           # full range
    {"size": (328, 184)},                                   # rows padded past the width in FFmpeg's buffers
    {"pix_fmt": "yuv444p"},
], ids=["bt601", "bt709", "full-range", "padded-rows", "yuv444p"])
def test_video_images_are_pyav_bgr_byte_for_byte(tmp_path, options):
    clip = write_clip(tmp_path / "clip.mp4", **options)
    with ReplayCamera(clip, clock=ManualClock()) as camera:
        images = [frame.image for frame in camera.frames()]     # all held at once: the pool is renewed too
    expected = pyav_bgr(clip)
    assert len(images) == len(expected) == 12
    for image, want in zip(images, expected, strict=True):
        assert image.shape == want.shape and np.array_equal(image, want)


def test_bt709_tag_is_what_the_conversion_follows(tmp_path):
    # the byte-for-byte test above can see a colour tag being ignored: the same planes untagged give other pixels
    clip = write_clip(tmp_path / "clip.mp4", colorspace=BT709, color_range=MPEG)
    with av.open(str(clip)) as container:
        frame = next(container.decode(video=0))
        tagged = frame.to_ndarray(format="bgr24")
        frame.colorspace = 2    # AVCOL_SPC_UNSPECIFIED: swscale's BT.601
        untagged = frame.to_ndarray(format="bgr24")
    assert np.abs(tagged.astype(np.int16) - untagged).max() > 5


def test_colour_tags_that_change_mid_stream_are_followed(tmp_path):
    # a stream's tags can change (an encoder restarted, a spliced recording): each frame converts by its own
    clip = write_clip(tmp_path / "clip.mp4", colorspace=BT709, color_range=MPEG)
    tags = [(BT709, MPEG), (2, MPEG), (BT709, MPEG), (BT709, JPEG), (2, 0), (BT709, MPEG)]  # 2, 0: unspecified
    bgr = BgrFrames()
    with av.open(str(clip)) as container:
        for frame, (colorspace, color_range) in zip(container.decode(video=0), tags, strict=False):
            frame.colorspace, frame.color_range = colorspace, color_range
            image = bgr.convert(frame)   # let go before the next: one graph would serve them all
            assert np.array_equal(image, frame.to_ndarray(format="bgr24")), (colorspace, color_range)
            del image


def test_a_held_frame_keeps_its_pixels_while_buffers_are_used_again(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=30)
    expected = pyav_bgr(clip)
    with ReplayCamera(clip, clock=ManualClock()) as camera:
        assert_kept_frames_keep_their_pixels(camera.frames(), expected, (slice(10, 50), slice(20, 80)))
