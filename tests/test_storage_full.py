"""A full disk is a fault, never a crash: each write site on a real small filesystem (a private tmpfs)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import _require_mosquitto
from tests.faults.harness import write_walks
from tests.small_fs import run_in_tmpfs

WALKS = 12  # the 8 MiB disk crashed at the 7th alarm


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
    assert found["log_lost"] > 0 and "log line(s) lost" in found["log_tail"][0], found
    assert found["log_tail"][1].endswith("space is back"), found


@pytest.mark.parametrize(("max_bytes", "reason"), [(2 * 1024**3, "disk_full"), (4 * 1024**2, "outbox_full")])
def test_an_eviction_to_make_room_says_which_limit_made_it(max_bytes, reason):
    # the put path once said outbox_full whatever the limit: a station told "outbox full" on a unit whose 2 GiB
    # bound was nowhere near would look for the wrong fault (the disk is what to check or swap)
    found = run_in_tmpfs("8m", "evict_for_the_disk", str(max_bytes))
    assert found["alarms_stored"] == 12 and found["evicted"] > 0, found   # alarms stay, clips went for them
    assert found["reasons"] == [reason], found


@pytest.mark.broker
@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.parametrize("max_bytes", [2 * 1024**3, 4 * 1024**2], ids=["disk-limited", "bound-4MiB"])
def test_agent_on_an_8mib_disk_with_the_broker_down_goes_on_raising_alarms_and_recovers(tmp_path, max_bytes):
    """The issue's case: 8 MiB filesystem, broker down, many alarms. Then a restart with the broker up."""
    _require_mosquitto()
    walks = write_walks(tmp_path / "walks.mp4", WALKS)
    short = write_walks(tmp_path / "short.mp4", 1)
    found = run_in_tmpfs("8m", "agent_replay", str(walks), str(short), str(tmp_path), str(max_bytes), timeout=900)
    print(json.dumps(found))
    assert found["alarms_raised"] == WALKS and found["starts"] == WALKS and found["ends"] == WALKS, found
    if max_bytes < found["fs_bytes"]:
        assert found["outbox_committed_after_run1"] <= max_bytes, found
    # a state fault says the disk/outbox is full (on a loaded machine a clip may also fail: write_failed)
    assert {"disk_full", "outbox_full"} & set(found["storage_faults_run1"]), found
    assert set(found["storage_faults_run1"]) <= {"disk_full", "outbox_full", "write_failed"}, found
    assert found["restore_received"] and found["second_run_finished"], found
    assert found["received_storage_faults"] and found["evicted_items"] > 0, found
    assert found["received_starts"] == WALKS + 1, found  # every alarm start arrived (run 1's and the restart's)
    assert found["named_unaccounted"] == [], found  # each named clip/snapshot arrived or was reported evicted
    assert "snapshot.jpg" not in found["evicted_names"] or "clip.mp4" in found["evicted_names"], found
    assert found["depth_after"] == 0, found
    # why each went: the filesystem was the limit, or the bound was
    assert found["evicted_reasons"] == (["disk_full"] if max_bytes > found["fs_bytes"] else ["outbox_full"]), found
