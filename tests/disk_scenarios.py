"""Full-disk scenarios, run inside a private tmpfs by tests/small_fs.py (`python -m tests.disk_scenarios NAME
MOUNT_POINT ...`); each prints what it found as one JSON line for the test to assert on."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

from agent.config import RecorderSettings
from agent.evidence.audit import AuditLog
from agent.evidence.keys import UnitKey
from agent.logsetup import DiskSafeHandler
from agent.storage.outbox import Outbox
from agent.storage.recorder import Recorder
from agent.storage.transaction import Transaction
from common.clock import ManualClock
from common.errors import StorageError, StorageFull
from drivers.camera.base import Frame

GIB = 1024**3


def fill(path: Path) -> int:
    """Another program fills the disk: write until ENOSPC; returns the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as stream:
        for size in (65536, 4096, 512, 1):  # down to the last few bytes
            while True:
                try:
                    written += stream.write(b"\xa5" * size)
                except OSError:
                    break
    return written


def outcome(call) -> str:
    """What a write did: "ok", or the class of the error it raised (never another exception)."""
    try:
        call()
    except StorageFull:
        return "StorageFull"
    except StorageError:
        return "StorageError"
    return "ok"


def write_sites(mount: Path) -> dict:
    """Each write site on a disk another program filled: SQLite puts, the journal, seq, a snapshot, the audit
    log, a raw transaction (the old ROLLBACK-after-failed-COMMIT crash), reopening and recovery; then space
    returns and everything works again."""
    clock = ManualClock(wall_start=time.time())
    data = mount / "data"
    box = Outbox(data, 2 * GIB, clock, reserve_bytes=512 * 1024)  # the disk, not max_bytes, is the limit
    key = UnitKey.load_or_create(data)
    audit = AuditLog(data, key, clock)
    audit.append("start", {})
    found: dict = {"reserve_at_start": box.disk_use().reserve}
    filler = mount / "filler"
    found["filled"] = fill(filler)
    found["free_when_full"] = box.disk_use().fs_free
    found["heartbeat"] = box.put_message("heartbeat", {"kind": "heartbeat", "pad": "h" * 300}, "heartbeat")
    seq = [box.next_seq(), box.next_seq()]
    found["seq_advances"] = seq[1] == seq[0] + 1
    alarm = box.put_message("event", {"kind": "intrusion", "phase": "start", "event_id": "a1", "pad": "a" * 300},
                            "event")
    found["alarm_stored"] = alarm > 0 and alarm in {m.id for m in box.pending(0, 100)}
    found["reserve_after_alarm"] = box.disk_use().reserve
    found["journal"] = outcome(lambda: box.open_alarm("a1", {"event_id": "a1"}))
    fill(mount / "filler2")  # the space the reserve gave back is taken too: nothing left, nothing to evict
    found["ordinary_event"] = outcome(lambda: box.put_message("event", {"kind": "tamper", "pad": "t" * 200_000},
                                                               "event"))
    recorder = Recorder(RecorderSettings(), box.media_dir, 10.0)
    image = np.full((720, 1280, 3), 0, np.uint8)
    image[::2, ::3] = 255  # a JPEG too large for what is left
    frame = Frame(0.0, 0, image, np.zeros((90, 160), np.uint8))
    found["snapshot"] = outcome(lambda: recorder.snapshot("a1", frame, []))
    found["snapshot_part_left"] = any(box.media_dir.rglob("*.part"))
    size_before = audit.path.stat().st_size
    found["audit"] = outcome(lambda: audit.append("event", {"pad": "x" * 400_000}))
    found["audit_cut_back"] = audit.path.stat().st_size == size_before and audit.path.read_bytes().endswith(b"\n")
    raw = sqlite3.connect(mount / "raw.sqlite", isolation_level=None)

    def raw_insert() -> None:
        with Transaction(raw, mount / "raw.sqlite"):
            raw.execute("CREATE TABLE IF NOT EXISTS t (b BLOB)")
            raw.execute("INSERT INTO t VALUES (?)", (b"\0" * 2_000_000,))

    found["raw_transaction"] = outcome(raw_insert)
    found["raw_usable_after"] = raw.execute("SELECT 1").fetchone() == (1,)
    state = box.check_storage()
    found["problem_when_full"] = state.problem
    log_stream = open(mount / "agent.log", "w", buffering=1, encoding="utf-8")  # stderr redirected to the disk
    handler = DiskSafeHandler(log_stream)
    logger = logging.getLogger("full-disk-test")
    logger.addHandler(handler)
    logger.propagate = False
    for n in range(50):
        logger.warning("line %d on a full disk %s", n, "x" * 200)
    found["log_lost"] = handler.lost
    box.close()
    reopened = Outbox(data, 2 * GIB, clock, reserve_bytes=512 * 1024)  # a restart on the full disk
    found["reopened_open_alarms"] = len(reopened.open_alarms())
    found["recover"] = outcome(reopened.recover)
    found["seq_after_reopen"] = reopened.next_seq() > seq[1]
    # space returns (the other program's files go)
    filler.unlink()
    (mount / "filler2").unlink()
    state = reopened.check_storage()
    found["problem_after_space_returns"] = state.problem
    state = reopened.check_storage()
    found["problem_next_check"] = state.problem
    found["reserve_back"] = reopened.disk_use().reserve
    found["event_after"] = outcome(lambda: reopened.put_message("event", {"kind": "tamper"}, "event"))
    found["audit_after"] = outcome(lambda: audit.append("event", {"n": 1}))
    logger.warning("space is back")
    log_stream.flush()
    found["log_tail"] = (mount / "agent.log").read_text(encoding="utf-8").splitlines()[-2:]
    entries = [json.loads(line) for line in audit.path.read_bytes().splitlines()]
    found["audit_kinds"] = [entry["kind"] for entry in entries]
    found["audit_gap"] = next((entry["data"] for entry in entries if entry["kind"] == "gap"), None)
    from station.verify import verify_audit

    verdict = verify_audit(audit.path, public_b64=key.public_b64())
    found["audit_verifies"] = verdict.ok
    found["audit_problems"] = list(getattr(verdict, "problems", []))[:3]
    reopened.close()
    return found


def evict_for_the_disk(mount: Path, max_bytes: str) -> dict:
    """Clips queued until the disk (or the bound) is nearly full, then alarms, which older clips make room for:
    each eviction's reason is the limit that made it, the filesystem or the bound."""
    clock = ManualClock(wall_start=time.time())
    box = Outbox(mount / "data", int(max_bytes), clock, reserve_bytes=256 * 1024)
    queued = 0
    for n in range(14):   # 14 x 500 kB of clips: 7 MB, nearly all of an 8 MiB disk, more than a 4 MiB bound
        folder = box.media_dir / f"ev-{n}"
        folder.mkdir(parents=True)
        try:
            (folder / "clip.mp4").write_bytes(bytes([n]) * 500_000)
        except OSError:
            break
        queued += outcome(lambda n=n, folder=folder: box.put_media(f"ev-{n}", "clip.mp4", folder / "clip.mp4",
                                                                   "video/mp4", 65536)) == "ok"
    stored = 0
    for n in range(12):   # alarms: 1.2 MB, more than what is left
        stored += outcome(lambda n=n: box.put_message("event", {"kind": "intrusion", "phase": "start",
                                                                "event_id": f"al-{n}", "pad": "a" * 100_000},
                                                      "event")) == "ok"
    reasons = [item["reason"] for _, item in box.unreported_evictions(limit=1000)]
    found = {"clips_queued": queued, "alarms_stored": stored, "evicted": len(reasons),
             "reasons": sorted(set(reasons)), "fs_bytes": _fs_size(mount)}
    box.close()
    return found


class DiskSampler:
    """The filesystem's peak use, sampled while the agent runs (what df would say)."""

    def __init__(self, mount: Path) -> None:
        import threading

        self.mount, self.peak, self._done = mount, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import os

        while not self._done.wait(0.05):  # sampling a real process's disk, not timing logic
            fs = os.statvfs(self.mount)
            self.peak = max(self.peak, (fs.f_blocks - fs.f_bfree) * fs.f_frsize)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


def _agent(recording: str, data: Path, broker_url: str, max_bytes: int, realtime: bool, clock):
    from agent.config import parse_config
    from agent.pipeline import Agent
    from drivers.camera.replay import ReplayCamera
    from tests.faults.harness import ALARM_SETTINGS, DEVICE

    # near-lossless clips (qp 6): a unit's ~1 MB clips from a small, cheap recording
    settings = {**ALARM_SETTINGS, "recorder": {**ALARM_SETTINGS["recorder"], "qp": 6, "preset": "ultrafast"}}
    config = parse_config({"device_id": DEVICE, "data_dir": str(data), "outbox": {"max_bytes": max_bytes},
                           "heartbeat": {"interval_s": 5},
                           "broker": {"url": broker_url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
                           "camera": {"backend": "replay", "source": recording, "realtime": realtime},
                           **settings})
    return Agent(config, ReplayCamera(recording, clock=clock, realtime=realtime), clock, drain_timeout_s=5)


def agent_replay(mount: Path, walks_path: str, short_path: str, work: str, max_bytes: str) -> dict:
    """The agent replays many alarms with the broker down on the small disk, then restarts with the broker up:
    no crash, the backlog drains, storage fault / evicted / restore events reach a station."""
    from common.clock import SystemClock
    from station.monitor import Monitor
    from tests.conftest import Broker
    from tests.faults.harness import DEVICE
    from tests.net import free_port

    clock, data, work_dir = SystemClock(), mount / "data", Path(work)
    found: dict = {"fs_bytes": _fs_size(mount), "max_bytes": int(max_bytes)}
    sampler = DiskSampler(mount)
    first = _agent(walks_path, data, f"mqtt://127.0.0.1:{free_port()}", int(max_bytes), False, clock)
    summary = first.run()  # the broker is down the whole run
    found["peak_fs_used_run1"] = sampler.stop()
    published = list(summary.events_published)
    found["alarms_raised"] = summary.alarms
    found["starts"] = sum(1 for e in published if e["kind"] == "intrusion" and e.get("phase") == "start")
    found["ends"] = sum(1 for e in published if e["kind"] == "intrusion" and e.get("phase") == "end")
    found["storage_faults_run1"] = [e.get("reason") for e in published
                                    if e["kind"] == "fault" and e.get("source") == "storage"]
    box = Outbox(data, int(max_bytes), clock, reserve_bytes=first.outbox.reserve_bytes)
    use = box.disk_use()
    found["outbox_committed_after_run1"], found["outbox_total_after_run1"] = use.committed, use.total
    found["fs_free_after_run1"] = use.fs_free
    found["unreported_evictions_after_run1"] = len(box.unreported_evictions(100_000))
    box.close()

    broker = Broker(work_dir)
    broker.start()
    received = work_dir / "received"
    monitor = Monitor(broker.url, DEVICE, received, printer=lambda line: None)
    monitor.start()
    monitor.wait_for(lambda m: m.subscribed, timeout=10)
    sampler = DiskSampler(mount)
    began = time.monotonic()
    second = _agent(short_path, data, broker.url, int(max_bytes), True, clock)
    restart = {}
    import threading

    runner = threading.Thread(target=lambda: restart.update(summary=second.run()), daemon=True)
    runner.start()

    def restored(m) -> bool:
        return any(e["kind"] == "restore" and e.get("source") == "storage" for e in m.events)

    found["restore_received"] = monitor.wait_for(restored, timeout=120)
    found["time_to_recover_s"] = round(time.monotonic() - began, 1)
    runner.join(timeout=600)  # a 14 s real-time replay and its drain; long only on a loaded machine
    found["peak_fs_used_run2"] = sampler.stop()
    found["second_run_finished"] = "summary" in restart
    monitor.stop()
    broker.stop()
    events = monitor.events
    found["received_storage_faults"] = [e.get("reason") for e in events
                                        if e["kind"] == "fault" and e.get("source") == "storage"]
    evicted = [item for e in events if e["kind"] == "evicted" for item in e["items"]]
    found["evicted_items"] = len(evicted)
    found["evicted_reasons"] = sorted({item["reason"] for item in evicted})
    found["evicted_names"] = sorted({item["name"] for item in evicted if item["what"] == "media"})
    # every media file an alarm end names has either arrived or been reported evicted
    ends = [e for e in events if e["kind"] == "intrusion" and e.get("phase") == "end"]
    named = {(e["event_id"], ref["name"], ref["sha256"]) for e in ends for ref in (e.get("clip"), e.get("snapshot"))
             if ref}
    arrived = {(media.event_id, media.name) for media in monitor.media.values() if media.verified}
    gone = {(item["event_id"], item["name"], item["sha256"]) for item in evicted if item["what"] == "media"}
    found["named_media"] = len(named)
    found["named_arrived"] = sum(1 for n in named if n[:2] in arrived)
    found["named_evicted"] = sum(1 for n in named if n in gone)
    found["named_unaccounted"] = sorted(f"{n[0]}/{n[1]}" for n in named if n[:2] not in arrived and n not in gone)
    found["received_starts"] = sum(1 for e in events if e["kind"] == "intrusion" and e.get("phase") == "start")
    box = Outbox(data, int(max_bytes), clock)
    found["depth_after"] = box.depth()
    found["outbox_committed_after"] = box.disk_use().committed
    box.close()
    return found


def _fs_size(mount: Path) -> int:
    import os

    fs = os.statvfs(mount)
    return fs.f_blocks * fs.f_frsize


SCENARIOS = {"write_sites": write_sites, "agent_replay": agent_replay, "evict_for_the_disk": evict_for_the_disk}

if __name__ == "__main__":
    name, mount_point, *rest = sys.argv[1:]
    print(json.dumps(SCENARIOS[name](Path(mount_point), *rest)), flush=True)
