"""Full-disk scenarios, run inside a private tmpfs by tests/small_fs.py (`python -m tests.disk_scenarios NAME
MOUNT_POINT ...`); each prints what it found as one JSON line for the test to assert on."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

from agent.config import RecorderSettings
from agent.evidence.audit import AuditLog
from agent.evidence.keys import UnitKey
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
    entries = [json.loads(line) for line in audit.path.read_bytes().splitlines()]
    found["audit_kinds"] = [entry["kind"] for entry in entries]
    found["audit_gap"] = next((entry["data"] for entry in entries if entry["kind"] == "gap"), None)
    from station.verify import verify_audit

    verdict = verify_audit(audit.path, public_b64=key.public_b64())
    found["audit_verifies"] = verdict.ok
    found["audit_problems"] = list(getattr(verdict, "problems", []))[:3]
    reopened.close()
    return found


SCENARIOS = {"write_sites": write_sites}

if __name__ == "__main__":
    name, mount_point, *rest = sys.argv[1:]
    print(json.dumps(SCENARIOS[name](Path(mount_point), *rest)), flush=True)
