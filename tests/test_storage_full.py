"""A full disk is a fault, never a crash: each write site on a real small filesystem (a private tmpfs)."""

from __future__ import annotations

from tests.small_fs import run_in_tmpfs


def test_every_write_site_survives_a_full_disk_and_recovers_when_space_returns():
    found = run_in_tmpfs("8m", "write_sites")
    assert found["free_when_full"] < 64 * 1024, found
    assert found["heartbeat"] == 0  # dropped, not raised
    assert found["seq_advances"] and found["seq_after_reopen"]
    assert found["alarm_stored"] and found["reserve_at_start"] > 0 and found["reserve_after_alarm"] == 0, found
    assert found["journal"] in ("ok", "StorageFull")
    assert found["ordinary_event"] == "StorageFull"
    assert found["snapshot"] in ("StorageFull", "StorageError") and not found["snapshot_part_left"], found
    assert found["audit"] == "StorageFull" and found["audit_cut_back"], found
    assert found["raw_transaction"] == "StorageFull" and found["raw_usable_after"], found
    assert found["problem_when_full"] == "disk_full"
    assert found["reopened_open_alarms"] in (0, 1) and found["recover"] == "ok"
    assert found["problem_after_space_returns"] is None or found["problem_next_check"] is None, found
    assert found["reserve_back"] > 0 and found["event_after"] == "ok" and found["audit_after"] == "ok", found
    assert found["audit_gap"] == {"missed": {"event": 1}}, found
    assert found["audit_kinds"][-2:] == ["gap", "event"] and found["audit_verifies"], found
