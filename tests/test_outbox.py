"""The durable outbox against a real SQLite file and real media files."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3

import pytest

from agent.storage.outbox import Outbox
from common.clock import ManualClock
from common.errors import StorageError


def make(tmp_path, max_bytes=64 * 1024 * 1024):
    return Outbox(tmp_path / "data", max_bytes, ManualClock())


def write_media(box, event_id, name, size, seed=1):
    folder = box.media_dir / event_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(bytes((i * 31 + seed) % 251 for i in range(size)))
    return path


def test_seq_persists_and_increases_across_reopen(tmp_path):
    box = make(tmp_path)
    first = [box.next_seq() for _ in range(3)]
    box.close()
    box = make(tmp_path)
    assert first == [1, 2, 3]
    assert box.next_seq() == 4
    box.close()


def test_put_pending_ack_keeps_id_order(tmp_path):
    box = make(tmp_path)
    ids = [box.put_message("event", {"n": n}, "event") for n in range(5)]
    ids.append(box.put_message("heartbeat", {"hb": 1}, "heartbeat", qos=0))
    assert ids == sorted(ids)
    rows = box.pending(0, 100)
    assert [r.id for r in rows] == ids
    assert [json.loads(r.payload) for r in rows[:5]] == [{"n": n} for n in range(5)]
    assert rows[-1].topic == "heartbeat" and rows[-1].qos == 0 and not rows[-1].retain
    assert [r.id for r in box.pending(ids[1], 2)] == ids[2:4]
    box.ack(ids[0])
    box.ack(ids[0])  # a duplicate PUBACK is harmless
    assert box.depth() == 5
    assert box.pending(0, 1)[0].id == ids[1]
    # rows survive reopening; ids are never reused after the table empties
    box.close()
    box = make(tmp_path)
    assert [r.id for r in box.pending(0, 100)] == ids[1:]
    for row_id in ids[1:]:
        box.ack(row_id)
    assert box.depth() == 0 and box.size_bytes() == 0
    assert box.put_message("event", {"n": 9}, "event") > ids[-1]
    box.close()


def test_media_chunks_reassemble_and_file_deleted_after_last_ack(tmp_path):
    box = make(tmp_path)
    path = write_media(box, "ev1", "clip.mp4", 10_000)
    manifest = box.put_media("ev1", "clip.mp4", path, "video/mp4", chunk_bytes=4096)
    assert manifest == {"event_id": "ev1", "name": "clip.mp4", "content_type": "video/mp4", "total_bytes": 10_000,
                        "chunk_bytes": 4096, "chunks": 3, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    rows = box.pending(0, 100)
    assert [r.topic for r in rows] == ["media/ev1/clip.mp4/manifest"] + [f"media/ev1/clip.mp4/{i}" for i in range(3)]
    assert json.loads(rows[0].payload) == manifest
    data = b"".join(r.payload for r in rows[1:])
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert box.size_bytes() == 10_000 + len(rows[0].payload)
    # bytes are referenced, not copied into SQLite
    chunk_payloads = [r[0] for r in sqlite3.connect(box.db_path).execute(
        "SELECT payload FROM messages WHERE kind='chunk'")]
    assert len(chunk_payloads) == 3 and all(payload is None for payload in chunk_payloads)
    for row in rows[:-1]:
        box.ack(row.id)
    assert path.exists()
    box.ack(rows[-1].id)
    # the sent file goes at once; its (now empty) event folder is tidied at the next start-up, never while the
    # recorder may be writing the alarm's clip into it
    assert not path.exists() and path.parent.exists()
    box.recover()
    assert not path.parent.exists()
    assert box.depth() == 0 and box.size_bytes() == 0
    box.close()


def test_precomputed_sha_and_empty_file(tmp_path):
    box = make(tmp_path)
    path = write_media(box, "ev2", "snapshot.jpg", 0)
    manifest = box.put_media("ev2", "snapshot.jpg", path, "image/jpeg", 1024, sha256="ab" * 32)
    assert manifest["chunks"] == 0 and manifest["sha256"] == "ab" * 32
    (row,) = box.pending(0, 10)
    box.ack(row.id)
    assert not path.exists()
    box.close()


def test_media_must_live_under_media_dir(tmp_path):
    box = make(tmp_path)
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(b"x" * 10)
    with pytest.raises(StorageError, match="elsewhere.mp4"):
        box.put_media("ev", "clip.mp4", outside, "video/mp4", 1024)
    inside = write_media(box, "ev", "clip.mp4", 10)
    box.put_media("ev", "clip.mp4", inside, "video/mp4", 1024)
    with pytest.raises(ValueError, match="already queued"):
        box.put_media("ev", "clip.mp4", inside, "video/mp4", 1024)
    with pytest.raises(ValueError, match="media name"):
        box.put_media("ev", "a/b", write_media(box, "ev", "x", 1), "video/mp4", 1024)
    box.close()


def test_eviction_heartbeats_then_clips_then_snapshots_then_events_then_alarms(tmp_path, caplog):
    """The bound is what the outbox occupies on disk (database, WAL, media, reserve); each put stays under it."""
    box = make(tmp_path, max_bytes=1024 * 1024)
    beats = [box.put_message("heartbeat", {"h": n, "pad": "y" * 400}, "heartbeat") for n in range(3)]
    snap = write_media(box, "ev1", "snapshot.jpg", 100_000, seed=1)
    clip = write_media(box, "ev1", "clip.mp4", 100_000, seed=2)
    box.put_media("ev1", "snapshot.jpg", snap, "image/jpeg", 65536)
    box.put_media("ev1", "clip.mp4", clip, "video/mp4", 65536)
    alarm = box.put_message("event", {"kind": "intrusion", "event_id": "a1", "pad": "a" * 400}, "event")
    ordinary = box.put_message("event", {"kind": "tamper", "event_id": "t1", "pad": "t" * 400}, "event")

    def left():
        return {r.id for r in box.pending(0, 1000)}

    n = 0
    while clip.exists() and n < 4000:  # ordinary events fill it: heartbeats go first, then the clip
        box.put_message("event", {"kind": "tamper", "n": n, "pad": "z" * 20000}, "event")
        n += 1
        assert box.disk_use().committed <= box.max_bytes
    assert set(beats).isdisjoint(left()) and caplog.text.index("evicted heartbeat") < caplog.text.index("dropped")
    assert snap.exists() and alarm in left() and ordinary in left()  # the snapshot is the last media to go
    while snap.exists() and n < 6000:
        box.put_message("event", {"kind": "tamper", "n": n, "pad": "z" * 20000}, "event")
        n += 1
    assert not snap.exists() and ordinary in left()
    box.put_message("event", {"kind": "tamper", "n": n, "pad": "z" * 20000}, "event")
    for _ in range(60):  # then ordinary events, oldest first; an ordinary event never evicts an alarm
        box.put_message("event", {"kind": "tamper", "pad": "z" * 20000}, "event")
    assert ordinary not in left() and alarm in left()
    for _ in range(60):  # alarms evict older alarms last of all
        box.put_message("event", {"kind": "intrusion", "pad": "i" * 20000}, "event")
        assert box.disk_use().committed <= box.max_bytes
    assert alarm not in left()
    assert "evicted heartbeat" in caplog.text and "dropped media" in caplog.text and "evicted event" in caplog.text
    dropped = [item for _, item in box.unreported_evictions(10_000)]
    media = [item for item in dropped if item["what"] == "media"]
    assert [m["name"] for m in media] == ["clip.mp4", "snapshot.jpg"]
    assert media[0]["sha256"] == hashlib.sha256(bytes((i * 31 + 2) % 251 for i in range(100_000))).hexdigest()
    assert all(item["reason"] == "outbox_full" for item in dropped)
    assert not any(item["name"] == "heartbeat" for item in dropped)  # heartbeats are only logged
    box.close()


def test_media_larger_than_outbox_is_refused(tmp_path):
    box = make(tmp_path, max_bytes=1000)
    big = write_media(box, "ev", "clip.mp4", 5000)
    with pytest.raises(StorageError, match="does not fit"):
        box.put_media("ev", "clip.mp4", big, "video/mp4", 1024)
    box.close()


def test_recover_repairs_part_files_and_inconsistent_media(tmp_path):
    box = make(tmp_path)
    good = write_media(box, "ev1", "clip.mp4", 3000)
    gone = write_media(box, "ev2", "clip.mp4", 3000)
    cut = write_media(box, "ev3", "clip.mp4", 3000)
    for event_id, path in (("ev1", good), ("ev2", gone), ("ev3", cut)):
        box.put_media(event_id, "clip.mp4", path, "video/mp4", 1024)
    event = box.put_message("event", {"e": 1}, "event")
    half = box.media_dir / "ev4" / "clip.mp4.part"
    half.parent.mkdir()
    half.write_bytes(b"half")
    box.close()
    gone.unlink()
    with open(cut, "r+b") as handle:
        handle.truncate(1000)

    box = make(tmp_path)
    repairs = box.recover()
    assert any("half-written" in r and "clip.mp4.part" in r for r in repairs)
    assert any("ev2" in r and "missing" in r for r in repairs)
    assert any("ev3" in r and "1000 bytes" in r for r in repairs)
    assert not half.exists() and not cut.exists() and good.exists()
    topics = [r.topic for r in box.pending(0, 100)]
    assert topics == [f"media/ev1/clip.mp4/{x}" for x in ("manifest", 0, 1, 2)] + ["event"]
    assert box.pending(0, 100)[-1].id == event
    assert box.recover() == []
    box.close()


def test_alarm_journal_survives_reopen(tmp_path):
    box = make(tmp_path)
    box.open_alarm("a1", {"event_id": "a1", "phase": "start"})
    box.open_alarm("a2", {"event_id": "a2", "phase": "start"})
    box.close_alarm("a1")
    box.close()
    box = make(tmp_path)
    assert box.open_alarms() == [{"event_id": "a2", "phase": "start"}]
    box.close()


def test_unwritable_data_dir_names_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match=str(blocker / "data")):
        Outbox(blocker / "data", 1024 * 1024, ManualClock())
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(StorageError, match=str(locked)):
                Outbox(locked / "data", 1024 * 1024, ManualClock())
        finally:
            locked.chmod(0o700)


def test_concurrent_put_and_ack_lose_nothing(tmp_path):
    import threading

    box = make(tmp_path)
    seen: list[int] = []
    done = threading.Event()

    def sender():
        cursor = 0
        while not (done.is_set() and box.depth() == 0):
            for row in box.pending(cursor, 16):
                seen.append(json.loads(row.payload)["n"])
                cursor = row.id
                box.ack(row.id)

    thread = threading.Thread(target=sender)
    thread.start()
    for n in range(300):
        box.put_message("event", {"n": n}, "event")
    done.set()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert seen == list(range(300)) and box.depth() == 0
    box.close()


def test_puts_survive_sigkill(tmp_path):
    import signal
    import subprocess
    import sys

    script = ("import sys; from pathlib import Path; from common.clock import SystemClock; "
              "from agent.storage.outbox import Outbox\n"
              "box = Outbox(Path(sys.argv[1]), 10**8, SystemClock())\n"
              "for n in range(100000):\n"
              "    print(box.put_message('event', {'n': n, 'seq': box.next_seq()}, 'event'), flush=True)\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "data")], stdout=subprocess.PIPE,
                             text=True)
    confirmed = [int(child.stdout.readline()) for _ in range(50)]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    child.stdout.close()
    box = make(tmp_path)
    stored = {row.id for row in box.pending(0, 200_000)}
    assert set(confirmed) <= stored
    handed_out = max(json.loads(row.payload)["seq"] for row in box.pending(0, 200_000))
    assert box.next_seq() > handed_out  # the counter never goes back behind what was handed out
    box.close()


def test_a_file_that_can_never_fit_evicts_nothing(tmp_path):
    from agent.storage.outbox import Outbox
    from common.clock import ManualClock
    from common.errors import StorageError

    outbox = Outbox(tmp_path / "data", 1024 * 1024, ManualClock())
    try:
        outbox.put_message("heartbeat", {"n": 1}, kind="heartbeat")
        small = outbox.media_dir / "ev1" / "snapshot.jpg"
        small.parent.mkdir(parents=True)
        small.write_bytes(b"x" * 1000)
        outbox.put_media("ev1", "snapshot.jpg", small, "image/jpeg", 256 * 1024)
        huge = outbox.media_dir / "ev1" / "clip.mp4"
        huge.write_bytes(b"y" * (1024 * 1024 + 1))
        depth = outbox.depth()
        with pytest.raises(StorageError, match="does not fit"):
            outbox.put_media("ev1", "clip.mp4", huge, "video/mp4", 256 * 1024)
        assert outbox.depth() == depth and small.exists()  # the heartbeat and the snapshot are still queued
    finally:
        outbox.close()


# ---- per-link delivery: the MQTT uplink and other links (ARC receivers, mailer) read the same stored rows ----

def test_two_links_each_get_their_rows_in_order_and_storage_frees_after_both(tmp_path):
    box = make(tmp_path)
    box.register_link("dc09", ("intrusion", "tamper"))
    box.register_link("email", ("intrusion",), media=True)
    alarm = box.put_message("event", {"kind": "intrusion", "event_id": "e1"}, "event")
    tamper = box.put_message("event", {"kind": "tamper"}, "event")
    box.put_message("event", {"kind": "scene_change"}, "event")
    box.put_message("heartbeat", {"hb": 1}, "heartbeat")
    snap = write_media(box, "e1", "snapshot.jpg", 3000)
    box.put_media("e1", "snapshot.jpg", snap, "image/jpeg", chunk_bytes=1024)
    assert [m.id for m in box.link_pending("dc09", 10)] == [alarm, tamper]
    email_rows = box.link_pending("email", 10)
    assert [m.kind for m in email_rows] == ["event", "manifest"]
    assert email_rows[0].payload == {"kind": "intrusion", "event_id": "e1"}
    assert email_rows[1].media_path == snap.resolve() and email_rows[1].payload["name"] == "snapshot.jpg"
    # the uplink delivers everything first: rows other links hold are hidden from it but kept, file kept
    for row in box.pending(0, 100):
        box.ack(row.id)
    assert box.depth() == 0 and box.pending(0, 100) == []
    assert snap.exists() and box.size_bytes() > 0
    box.link_ack("dc09", alarm)
    assert [m.id for m in box.link_pending("email", 10)][0] == alarm  # dc09's ack does not touch email's
    for row in email_rows:
        box.link_ack("email", row.id)
    assert not snap.exists()  # the last holder of the manifest freed the file
    box.link_ack("dc09", tamper)
    assert box.size_bytes() == 0 and box.link_depth("dc09") == 0 and box.link_depth("email") == 0
    box.close()


def test_link_acks_before_the_uplink_leave_the_row_for_the_uplink_and_survive_reopen(tmp_path):
    box = make(tmp_path)
    box.register_link("dc09", ("intrusion",))
    first = box.put_message("event", {"kind": "intrusion", "n": 1}, "event")
    second = box.put_message("event", {"kind": "intrusion", "n": 2}, "event")
    box.link_ack("dc09", first)
    assert [r.id for r in box.pending(0, 10)] == [first, second]  # the uplink still gets both
    box.close()
    box = make(tmp_path)  # links and their positions are durable
    assert [m.payload["n"] for m in box.link_pending("dc09", 10)] == [2]
    box.put_message("event", {"kind": "intrusion", "n": 3}, "event")
    assert [m.payload["n"] for m in box.link_pending("dc09", 10)] == [2, 3]
    for row in box.pending(0, 10):
        box.ack(row.id)
    assert box.depth() == 0 and box.link_depth("dc09") == 2
    box.unregister_link("dc09")  # a link disabled in config releases what it held
    assert box.size_bytes() == 0
    box.close()


def test_eviction_drops_link_rows_with_the_message(tmp_path):
    box = make(tmp_path, max_bytes=1024 * 1024)
    box.register_link("dc09", ("tamper",))
    ids = [box.put_message("event", {"kind": "tamper", "pad": "x" * 20000, "n": n}, "event") for n in range(60)]
    held = [m.id for m in box.link_pending("dc09", 1000)]
    assert held == [i for i in ids if i in {r.id for r in box.pending(0, 1000)}]  # evicted for both alike
    assert held[-1] == ids[-1] and len(held) < 60
    assert box.disk_use().committed <= box.max_bytes
    box.close()


def test_named_counter_persists_and_is_separate_from_seq(tmp_path):
    box = make(tmp_path)
    assert [box.next_counter("dc09_seq") for _ in range(2)] == [1, 2]
    assert box.next_seq() == 1
    with pytest.raises(ValueError):
        box.next_counter("seq")
    box.close()
    box = make(tmp_path)
    assert box.next_counter("dc09_seq") == 3
    box.close()
