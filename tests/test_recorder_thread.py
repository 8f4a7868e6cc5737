"""The software clip is encoded off the frame loop: a slow encoder drops (and counts) clip frames, never blocks
the caller or detection; the pre-roll is still in the clip; importing the agent does not load PyAV."""

from __future__ import annotations

import logging
import subprocess
import sys

import av
import numpy as np

from agent.config import RecorderSettings
from agent.storage.clip_sink import CatchUp, PreRollBuffer, SoftwareClipSink
from drivers.camera.base import Frame

SIZE = (1280, 720)


def textured_frames(count: int):
    """Distinct noisy 720p frames, so x264 at a slow preset has real work on each."""
    rng = np.random.default_rng(3)
    for index in range(count):
        image = rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
        yield Frame(ts=index / 10, index=index, image=image, luma=image[::8, ::8, 0].copy())


def decoded_count(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_a_full_queue_drops_clip_frames_and_counts_them(tmp_path, caplog):
    one_frame = SIZE[0] * SIZE[1] * 3 // 2     # a queued frame is yuv420p
    sink = SoftwareClipSink(RecorderSettings(pre_roll_s=0.5, preset="slower", qp=10), queue_bytes=2 * one_frame)
    frames = textured_frames(66)
    for _ in range(6):
        sink.push(next(frames))    # pre-roll: frames 0..5
    sink.start(tmp_path, next(frames), fps=10.0)
    for frame in frames:           # 59 frames offered far faster than x264 'slower' encodes noisy 720p
        sink.push(frame)
    with caplog.at_level(logging.WARNING):
        clip = sink.finish()
    assert sink.dropped_frames > 0, "the queue never filled"
    assert decoded_count(clip.path) + sink.dropped_frames == 66, "every frame is either in the clip or counted"
    assert f"{sink.dropped_frames} frames dropped" in caplog.text
    assert not list(tmp_path.glob("*.part"))


def test_an_unhurried_clip_drops_nothing(tmp_path):
    # room in the queue for all 10 frames offered at once (1.3 MiB each)
    sink = SoftwareClipSink(RecorderSettings(pre_roll_s=0.5, preset="ultrafast", clip_queue_bytes=16 * 1024 * 1024))
    frames = textured_frames(16)
    for _ in range(6):
        sink.push(next(frames))
    sink.start(tmp_path, next(frames), fps=10.0)
    for frame in frames:
        sink.push(frame)
    clip = sink.finish()
    assert (sink.dropped_frames, decoded_count(clip.path)) == (0, 16)


#: libraries the agent loads only where their backend is used (RSS each, issue 12): PyAV for the software recorder
#: and replay (21 MiB), cryptography for an encrypted DC-09 path (7), paho once uploading (11), the web extra for
#: commissioning (15), matplotlib never (34)
LAZY = ("av", "cryptography", "paho", "starlette", "uvicorn", "matplotlib")


def test_the_agent_starts_without_importing_libraries_it_may_not_use():
    probe = ("import sys, agent.cli, agent.pipeline, agent.storage.recorder; "
             "print(sorted(set(sys.modules) & set(sys.argv[1:])))")
    result = subprocess.run([sys.executable, "-c", probe, *LAZY], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_recordings_clip_waits_for_the_encoder_and_loses_no_frame(tmp_path):
    """The same overload as above, from a recording (no camera to keep up with): every frame is in the clip."""
    one_frame = SIZE[0] * SIZE[1] * 3 // 2
    sink = SoftwareClipSink(RecorderSettings(pre_roll_s=0.5, preset="slower", qp=10), queue_bytes=2 * one_frame,
                            wait_when_full=True)
    frames = textured_frames(66)
    for _ in range(6):
        sink.push(next(frames))
    sink.start(tmp_path, next(frames), fps=10.0)
    for frame in frames:
        sink.push(frame)
    clip = sink.finish()
    assert (sink.dropped_frames, decoded_count(clip.path)) == (0, 66)


def test_the_agent_chooses_waiting_for_recordings_and_dropping_for_live_cameras():
    from agent.storage.clip_sink import clip_sink
    from drivers.camera.base import Camera

    class Recording(Camera):
        live = False

        def open(self): ...

        def close(self): ...

        def frames(self):
            return iter(())

    class Live(Recording):
        live = True

    assert clip_sink(RecorderSettings(), Recording(), allow_hardware=True).wait_when_full is True
    assert clip_sink(RecorderSettings(), Live(), allow_hardware=True).wait_when_full is False


def test_frames_arriving_while_the_pre_roll_is_encoded_wait_as_jpeg_not_dropped(tmp_path):
    """At an alarm's start the encoder has the whole pre-roll to encode; the frames pushed meanwhile wait as JPEG
    (as many bytes as the queue), so a queue of a few raw frames loses none of them."""
    size = (640, 360)
    rng = np.random.default_rng(4)
    ramp = np.linspace(40, 200, size[0], dtype=np.float32)[None, :, None]

    def frame(index: int) -> Frame:
        # a smooth yard with sensor noise and a moving block: ~30 kB as JPEG, 338 kB as yuv420p
        image = np.clip(ramp + rng.normal(0, 2, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
        image[100:200, 10 * index % 500:10 * index % 500 + 80] = 30
        return Frame(ts=index / 10, index=index, image=image, luma=image[::4, ::4, 0].copy())

    settings = RecorderSettings(pre_roll_s=3.0, preset="slower", qp=10, clip_queue_bytes=2 * 1024 * 1024)
    sink = SoftwareClipSink(settings)
    for index in range(30):
        sink.push(frame(index))        # 3 s of pre-roll: a second or more of work for x264 'slower'
    sink.start(tmp_path, frame(30), fps=10.0)
    for index in range(31, 60):        # 29 more at once: 9.6 MiB raw, five times what the 2 MiB queue holds
        sink.push(frame(index))
    clip = sink.finish()
    assert (sink.dropped_frames, decoded_count(clip.path)) == (0, 60)


def test_catch_up_hands_over_pre_roll_and_late_frames_in_order_then_sends_frames_raw():
    ring = PreRollBuffer(seconds=5.0, jpeg_quality=85)
    frames = textured_frames(5)
    for _ in range(2):
        frame = next(frames)
        ring.push(frame.ts, frame.image)
    catch_up = CatchUp(ring, extra_bytes=64 * 1024 * 1024, wait=False)
    assert len(ring) == 0, "the ring starts empty again"
    late = next(frames)
    assert catch_up.offer(late.ts, late.image), "the encoder is still on the pre-roll: the frame waits as JPEG"
    handed = [ts for ts, image in catch_up]
    assert handed == [0.0, 0.1, 0.2] and catch_up.done
    after = next(frames)
    assert not catch_up.offer(after.ts, after.image), "caught up: later frames go to the encoder's queue raw"


def test_catch_up_drops_and_counts_beyond_its_bytes_when_live():
    ring = PreRollBuffer(seconds=5.0, jpeg_quality=85)
    catch_up = CatchUp(ring, extra_bytes=1, wait=False)
    frame = next(textured_frames(1))
    assert catch_up.offer(frame.ts, frame.image) and catch_up.dropped == 1
    assert [ts for ts, _ in catch_up] == []


def test_frames_converted_into_reused_buffers_each_reach_the_clip_as_they_were(tmp_path):
    """The encoder's yuv420p buffers are used again once a frame is encoded: frames queued behind each other keep
    their own pixels (a buffer handed back too early, or kept by the encoder, would show a later frame twice)."""
    from agent.storage.encoding import ClipWriter, EncoderThread

    levels = [20 + 15 * index for index in range(12)]
    writer = ClipWriter(tmp_path / "clip.mp4", RecorderSettings(qp=0), 10.0, 320, 240)
    encoder = EncoderThread(writer, [], queue_bytes=64 * 1024 * 1024)
    for index, level in enumerate(levels):     # all queued at once, faster than x264 takes them
        assert encoder.offer(index / 10, np.full((240, 320, 3), level, np.uint8))
    clip = encoder.close()
    with av.open(str(clip.path)) as container:
        lumas = [frame.to_ndarray()[:240].mean() for frame in container.decode(video=0)]  # the Y plane
    expected = [16 + level * 219 / 255 for level in levels]    # BT.601 limited-range luma of a grey level
    assert np.allclose(lumas, expected, atol=1.0)


def test_pre_roll_jpegs_reach_the_clip_in_the_colours_of_the_live_frames(tmp_path):
    """The pre-roll is decoded from JPEG straight to yuv420p (no BGR between): its planes must land in the same
    limited range, plane order and place as a live frame's (OpenCV's BGR -> I420), or the clip's colours jump at
    the alarm."""
    from agent.storage.encoding import to_yuv420

    colours = [(30, 60, 200), (200, 120, 40), (90, 200, 90), (128, 128, 128), (240, 240, 240), (10, 10, 10)]
    images = [np.full((240, 320, 3), colour, np.uint8) for colour in colours]
    sink = SoftwareClipSink(RecorderSettings(pre_roll_s=1.0, qp=0))
    for index, image in enumerate(images[:-1]):    # the pre-roll, through the JPEG ring
        sink.push(Frame(ts=index / 10, index=index, image=image, luma=image[::4, ::4, 0].copy()))
    alarm = images[-1]
    sink.start(tmp_path, Frame(ts=0.5, index=5, image=alarm, luma=alarm[::4, ::4, 0].copy()), fps=10.0)
    clip = sink.finish()
    with av.open(str(clip.path)) as container:
        decoded = [frame.to_ndarray() for frame in container.decode(video=0)]    # yuv420p, as encoded
    assert len(decoded) == len(images)
    for image, planes in zip(images, decoded, strict=True):
        expected = to_yuv420(image, (320, 240)).astype(np.int16)
        for rows in (slice(0, 240), slice(240, 300), slice(300, 360)):  # Y, U, V
            assert np.abs(planes[rows].astype(np.int16) - expected[rows]).mean() < 1.5
