"""A clip cut short by a kill: real fragmented MP4s from the ClipWriter, cut at many byte offsets, finished by
agent/storage/fragments.py and checked with PyAV; then recovery on a real outbox announces it as partial."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from agent.config import RecorderSettings
from agent.evidence.audit import AuditLog
from agent.evidence.keys import UnitKey
from agent.evidence.notary import Notary
from agent.recovery import recover
from agent.storage.encoding import FRAGMENT_S, ClipWriter
from agent.storage.fragments import PARTIAL_NAME, complete_prefix, finish_partial, read_frames
from agent.storage.media import file_sha256
from agent.storage.outbox import Outbox
from agent.uplink.messages import EVENT, Identity
from agent.uplink.publisher import Publisher
from common.clock import ManualClock
from drivers.camera.synthetic import SyntheticCamera
from station.verify import verify_media

FPS = 10.0
IDENTITY = Identity(device_id="pid-test-01", site_ref="TEST")


def decoded(path: Path) -> list[np.ndarray]:
    """Every frame of a file, decoded with PyAV (an error, not a short list, if the file is damaged)."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A 4 s clip written by the ClipWriter, with the bytes on disk after each frame (what a kill would leave)."""
    folder = tmp_path_factory.mktemp("partial")
    writer = ClipWriter(folder / "clip.mp4", RecorderSettings(), FPS, 320, 180)
    on_disk = []  # (frames given to the writer, the .part file's bytes at that moment)
    camera = SyntheticCamera(clock=ManualClock(), width=320, height=180, fps=FPS, duration_s=4.0)
    with camera:
        for frame in camera.frames():
            writer.add(frame.ts + 5.0, frame.image)
            on_disk.append((frame.index + 1, writer.part_path.read_bytes()))
    finished = writer.close()
    return finished.path, on_disk


def packets(path: Path) -> list[tuple[int, int, int]]:
    """(pos, size, pts) of each packet of a whole file."""
    with av.open(str(path)) as container:
        return [(p.pos, p.size, p.pts) for p in container.demux(video=0) if p.size]


def cut(tmp_path: Path, data: bytes) -> Path:
    part = tmp_path / "clip.mp4.part"
    part.write_bytes(data)
    return part


def test_the_file_grows_fragment_by_fragment_at_most_every_half_second(recording):
    whole, on_disk = recording
    sizes = [len(data) for _, data in on_disk]
    growths = [n for (n, data), before in zip(on_disk[1:], sizes, strict=False) if len(data) != before]
    assert len(growths) >= 4
    # frames given between two growths of the file: a fragment's worth, never more than FRAGMENT_S of video
    steps = np.diff([on_disk[0][0]] + growths)
    assert steps.max() <= FRAGMENT_S * FPS, steps
    # every size the file had while being written is a whole fragmented MP4
    for _, data in on_disk[1:]:
        assert data[4:8] == b"ftyp" and len(data) in {len(d) for _, d in on_disk}


@pytest.mark.parametrize("where", ["in the header", "in the first moof", "in an mdat", "at a fragment's end",
                                   "a few bytes into a moof", "in the last mdat"])
def test_a_cut_clip_is_finished_up_to_its_last_whole_fragment(recording, tmp_path, where):
    whole, on_disk = recording
    data = whole.read_bytes()
    boundaries = sorted({len(d) for _, d in on_disk if len(d)})   # the file's sizes while it was written
    header_end, first_fragment_end = boundaries[0], boundaries[1]
    offset = {"in the header": header_end // 2, "in the first moof": header_end + 40,
              "in an mdat": (boundaries[2] + boundaries[3]) // 2, "at a fragment's end": boundaries[3],
              "a few bytes into a moof": boundaries[4] + 5, "in the last mdat": len(data) - 1200}[where]
    expected_end = max([b for b in boundaries if b <= offset], default=0)
    part = cut(tmp_path, data[:offset])
    finished = finish_partial(part, tmp_path / PARTIAL_NAME)
    assert not part.exists()
    if expected_end < first_fragment_end:
        assert finished is None and not (tmp_path / PARTIAL_NAME).exists()
        return
    assert finished is not None
    assert finished.media.size == expected_end == finished.media.path.stat().st_size
    assert finished.media.sha256 == file_sha256(finished.media.path)
    assert finished.dropped_bytes == offset - expected_end
    kept = [p for p in packets(whole) if p[0] + p[1] <= expected_end]
    frames = decoded(finished.media.path)
    assert len(frames) == finished.frames == len(kept)
    # the same pictures as the whole clip's first frames: nothing of the cut fragment leaks in
    for mine, original in zip(frames, decoded(whole)[:len(frames)], strict=False):
        assert np.array_equal(mine, original)
    assert finished.duration_s == pytest.approx(len(kept) / FPS, abs=1e-3)


def test_every_state_a_kill_can_leave_finishes_to_what_was_on_disk(recording, tmp_path):
    """The .part as it was after each frame given to the writer: what a SIGKILL at that moment leaves."""
    _, on_disk = recording
    for given, data in on_disk:
        part = cut(tmp_path, data)
        finished = finish_partial(part, tmp_path / PARTIAL_NAME)
        if finished is None:
            assert given <= FRAGMENT_S * FPS + 1  # only before the first fragment is written
            continue
        assert len(decoded(finished.media.path)) == finished.frames
        # what is lost is the fragment being filled: under FRAGMENT_S plus the frame the muxer holds back
        assert given - finished.frames <= FRAGMENT_S * FPS + 1, (given, finished.frames)
        assert finished.duration_s == pytest.approx(finished.frames / FPS, abs=1e-3)
        finished.media.path.unlink()


def test_finishing_again_after_a_kill_mid_finish_gives_the_same_file(recording, tmp_path):
    whole, _ = recording
    data = whole.read_bytes()[:len(whole.read_bytes()) * 2 // 3]
    first = finish_partial(cut(tmp_path, data), tmp_path / PARTIAL_NAME)
    # a kill after the cut, before the rename: the .part is already cut and is finished again
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    shutil.copy(first.media.path, again_dir / "clip.mp4.part")
    second = finish_partial(again_dir / "clip.mp4.part", again_dir / PARTIAL_NAME)
    assert second.media.sha256 == first.media.sha256 and second.duration_s == first.duration_s


def test_a_file_that_is_not_a_fragmented_mp4_keeps_nothing(tmp_path):
    assert complete_prefix(cut(tmp_path, b"\x00\x00\x00\x08free" + b"garbage" * 100)) == 0
    assert finish_partial(cut(tmp_path, b"not an mp4 at all"), tmp_path / PARTIAL_NAME) is None
    assert finish_partial(cut(tmp_path, b""), tmp_path / PARTIAL_NAME) is None


def test_read_frames_refuses_a_clip_with_a_packet_cut_short(recording, tmp_path):
    whole, _ = recording
    cut_file = tmp_path / "cut.mp4"
    pos, size, _ = packets(whole)[-1]
    assert size > 2
    # the last moof whole, the last packet of its mdat half there (a fixed byte count is not: how big the last
    # fragment is depends on the encoder's settings)
    cut_file.write_bytes(whole.read_bytes()[:pos + size // 2])
    with pytest.raises(Exception, match="cut short"):
        read_frames(cut_file)


def test_recovery_announces_a_killed_clip_as_partial_with_its_manifest(recording, tmp_path):
    whole, on_disk = recording
    clock = ManualClock()
    data_dir = tmp_path / "data"
    outbox = Outbox(data_dir, 1 << 30, clock)
    key = UnitKey.load_or_create(data_dir)
    notary = Notary(key, AuditLog(data_dir, key, clock), IDENTITY, "0" * 64, clock)
    start = {**IDENTITY.model_dump(), "event_id": "ev-killed", "seq": 1, "ts": "2026-12-01T00:00:00.000Z",
             "frame": 60, "kind": "intrusion", "phase": "start", "score": 0.1, "boxes": [], "image_size": [320, 180],
             "zone": None, "confirmed_by": ["video"], "class": "person", "snapshot": None}
    outbox.open_alarm("ev-killed", start)
    folder = outbox.media_dir / "ev-killed"
    folder.mkdir(parents=True)
    given, data = on_disk[27]  # killed 2.8 s into the clip
    (folder / "clip.mp4.part").write_bytes(data)
    events = []
    publisher = Publisher(outbox, 64 * 1024, notary=notary, key=key)
    recover(outbox, publisher, IDENTITY, clock, notary)
    events = list(publisher.published)
    (end,) = events
    parsed = EVENT.validate_python(end)
    assert parsed.phase == "end" and parsed.incomplete and parsed.clip.partial
    assert parsed.clip.name == PARTIAL_NAME and "partial" in parsed.reason
    clip = folder / PARTIAL_NAME
    assert parsed.clip.sha256 == file_sha256(clip) and parsed.clip.bytes == clip.stat().st_size
    frames = len(decoded(clip))
    assert parsed.clip.duration_s == pytest.approx(frames / FPS, abs=1e-3)
    assert given - frames <= FRAGMENT_S * FPS + 1
    assert verify_media(clip).ok, verify_media(clip).problems
    manifest = json.loads((folder / (PARTIAL_NAME + ".manifest.json")).read_text())
    assert manifest["partial"] is True and manifest["duration_s"] == parsed.clip.duration_s
    assert outbox.is_queued(clip) and outbox.is_queued(folder / (PARTIAL_NAME + ".manifest.json"))
    assert outbox.open_alarms() == [] and not list(folder.glob("*.part"))
    outbox.close()


def test_the_snapshot_is_on_disk_and_queued_before_the_alarm_start_that_names_it(tmp_path):
    """An offline replay of the demo walk: in the outbox the snapshot (and its manifest) come before the start."""
    import sqlite3

    from agent.config import parse_config
    from agent.pipeline import Agent
    from drivers.camera.replay import ReplayCamera
    from evaluation.demo import write_demo

    walk = tmp_path / "walk.mp4"
    write_demo(walk, seconds=14.0, width=320, height=180)
    config = parse_config({"data_dir": str(tmp_path / "data"), "camera": {"backend": "replay", "source": str(walk)},
                           "recorder": {"post_roll_s": 1.0}})
    clock = ManualClock()
    summary = Agent(config, ReplayCamera(walk, clock=clock, realtime=False), clock, upload=False).run()
    start = next(e for e in summary.events_published if e["kind"] == "intrusion" and e["phase"] == "start")
    db = sqlite3.connect(tmp_path / "data" / "outbox.sqlite")
    try:
        rows = db.execute("SELECT id, topic, payload FROM messages ORDER BY id").fetchall()
    finally:
        db.close()
    order = [topic for _, topic, _ in rows]
    base = f"media/{start['event_id']}"
    start_at = next(i for i, (_, topic, payload) in enumerate(rows)
                    if topic == "event" and json.loads(payload)["event_id"] == start["event_id"])
    assert order.index(f"{base}/snapshot.jpg/manifest") < start_at
    assert order.index(f"{base}/snapshot.jpg.manifest.json/manifest") < start_at
    snapshot = tmp_path / "data" / "media" / start["event_id"] / "snapshot.jpg"
    assert start["snapshot"] == {"name": "snapshot.jpg", "bytes": snapshot.stat().st_size,
                                 "sha256": file_sha256(snapshot)}
    assert verify_media(snapshot).ok
