"""Evidence through the whole agent: signed manifests beside each clip and snapshot, a signed hash-chained audit
log, and `pid-station verify` naming exactly what was changed, removed or re-signed."""

from __future__ import annotations

import json

import pytest
from nacl.signing import SigningKey

from agent.config import parse_config
from agent.evidence.audit import AuditLog, canonical
from agent.evidence.keys import UnitKey
from agent.pipeline import Agent
from common.clock import ManualClock
from drivers.camera.replay import ReplayCamera
from station.cli import main
from station.verify import verify_audit, verify_media, verify_paths


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """One offline replay of the demo walk: its data dir, with an alarm's clip, snapshot and audit log."""
    from evaluation.demo import write_demo

    root = tmp_path_factory.mktemp("evidence")
    clip = root / "walk.mp4"
    write_demo(clip, seconds=14.0, width=320, height=180)
    config = parse_config({"data_dir": str(root / "data"), "camera": {"backend": "replay", "source": str(clip)},
                           "recorder": {"post_roll_s": 1.0}})
    clock = ManualClock()
    summary = Agent(config, ReplayCamera(clip, clock=clock, realtime=False), clock, upload=False).run()
    assert summary.alarms == 1
    return root / "data", list(summary.events_published)


def media_of(data_dir):
    (folder,) = [p for p in (data_dir / "media").iterdir() if p.is_dir()]
    return folder / "clip.mp4", folder / "snapshot.jpg"


def test_every_media_file_has_a_signed_manifest_that_verifies(replayed):
    data_dir, events = replayed
    clip, snapshot = media_of(data_dir)
    for path in (clip, snapshot):
        assert verify_media(path).ok, verify_media(path).problems
        manifest = json.loads(path.with_name(path.name + ".manifest.json").read_text())
        assert manifest["event_id"] == clip.parent.name and manifest["device_id"] == "pid-demo-001"
    end = next(e for e in events if e["kind"] == "intrusion" and e["phase"] == "end")
    assert json.loads(clip.with_name("clip.mp4.manifest.json").read_text())["sha256"] == end["clip"]["sha256"]


def test_a_flipped_byte_is_named_by_its_block(replayed, tmp_path):
    clip, _ = media_of(replayed[0])
    copy = tmp_path / "clip.mp4"
    data = bytearray(clip.read_bytes())
    data[300_000 if len(data) > 300_000 else len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    (tmp_path / "clip.mp4.manifest.json").write_bytes(clip.with_name("clip.mp4.manifest.json").read_bytes())
    problems = verify_media(copy).problems
    block = (300_000 if len(data) > 300_000 else len(data) // 2) // (256 * 1024)
    assert any(p.startswith(f"bytes {block * 256 * 1024}-") and p.endswith("changed") for p in problems), problems


def test_the_audit_log_chains_every_event_and_verifies(replayed):
    data_dir, events = replayed
    lines = (data_dir / "audit.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert entries[0]["kind"] == "start" and entries[-1]["kind"] == "stop"
    assert [e["data"]["seq"] for e in entries if e["kind"] == "event"] == [e["seq"] for e in events]
    assert verify_audit(data_dir / "audit.jsonl").ok


def test_a_removed_entry_and_a_resigned_entry_are_named(replayed, tmp_path):
    lines = (replayed[0] / "audit.jsonl").read_bytes().split(b"\n")[:-1]
    cut = tmp_path / "audit.jsonl"
    cut.write_bytes(b"\n".join(lines[:2] + lines[3:]) + b"\n")
    assert "entry 3 removed" in verify_audit(cut).problems
    # an entry altered and signed again with another key: the unit's key no longer vouches for it
    forger = UnitKey(SigningKey.generate())
    entry = json.loads(lines[2])
    entry.pop("sig")
    entry["data"] = {"forged": True}
    entry["key"] = forger.id
    entry["sig"] = forger.sign(canonical(entry))
    resigned = tmp_path / "audit-resigned.jsonl"
    resigned.write_bytes(b"\n".join(lines[:2] + [canonical(entry)] + lines[3:]) + b"\n")
    problems = verify_audit(resigned).problems
    assert f"entry 3 signed by an unknown key ({forger.id})" in problems
    assert "entry 4 does not follow entry 3 (changed, or one inserted)" in problems


def test_a_torn_last_entry_is_set_aside_and_recorded(tmp_path):
    key, clock = UnitKey.load_or_create(tmp_path), ManualClock()
    log = AuditLog(tmp_path, key, clock)
    log.append("start", {"public_key": key.public_b64()})
    log.append("event", {"seq": 1})
    with (tmp_path / "audit.jsonl").open("ab") as stream:
        stream.write(b'{"n": 3, "kind": "ev')  # the power went while this line was written
    reopened = AuditLog(tmp_path, key, clock)
    assert reopened.head.count == 3
    last = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "torn_entry" and last["data"]["bytes"] == 20
    assert (tmp_path / "audit.torn-3").read_bytes() == b'{"n": 3, "kind": "ev'
    assert verify_audit(tmp_path / "audit.jsonl").ok


@pytest.mark.parametrize("damaged, reason", [(b"\x00" * 48, "line is not JSON"),  # a block the card zeroed
                                              (b'{"n": "three", "kind": "event"}', "no entry number")])
def test_a_damaged_last_entry_is_logged_recorded_and_named_by_verify(tmp_path, caplog, damaged, reason):
    key, clock = UnitKey.load_or_create(tmp_path), ManualClock()
    log = AuditLog(tmp_path, key, clock)
    log.append("start", {"public_key": key.public_b64()})
    log.append("event", {"seq": 1})
    with (tmp_path / "audit.jsonl").open("ab") as stream:
        stream.write(damaged + b"\n")  # whole, with its end of line, but not an entry
    with caplog.at_level("WARNING", logger="agent.evidence.audit"):
        reopened = AuditLog(tmp_path, key, clock)
    assert any("(line 3) is damaged" in r.getMessage() and reason in r.getMessage() for r in caplog.records)
    assert reopened.head.count == 4  # the damaged line kept its place (3); the record of it is entry 4
    lines = (tmp_path / "audit.jsonl").read_bytes().split(b"\n")
    assert lines[2] == damaged  # left in place: entry 4 chains on from its bytes
    record = json.loads(lines[3])
    assert record["kind"] == "damaged_entry" and record["n"] == 4
    assert record["data"]["line"] == 3 and record["data"]["bytes"] == len(damaged)
    assert reason in record["data"]["reason"]
    reopened.append("event", {"seq": 2})
    assert AuditLog(tmp_path, key, clock).head.count == 5  # recorded once, not at every start
    problems = verify_audit(tmp_path / "audit.jsonl").problems
    assert len(problems) == 1, problems  # the damaged line only: nothing after it is called removed or unlinked
    assert problems[0].startswith("line 3 is not an audit entry (") and reason in problems[0]
    assert problems[0].endswith("recorded by the unit in entry 4")


def test_verify_command_exit_codes(replayed, tmp_path, capsys):
    data_dir, _ = replayed
    clip, snapshot = media_of(data_dir)
    assert main(["verify", str(clip), str(snapshot), str(data_dir / "audit.jsonl")]) == 0
    other = UnitKey(SigningKey.generate()).public_b64()
    assert main(["verify", str(clip), "--public-key", other]) == 1
    assert "signed by an unknown key" in capsys.readouterr().out
    assert not verify_paths([tmp_path / "missing.mp4"])[0].ok
