"""`pid-agent decommission` on a real data dir made by a replay run (an alarm, its clip, snapshot and manifests
spooled in the outbox): refusals that change nothing, export then wipe, and delivery to a real mosquitto."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.evidence.audit import canonical
from agent.evidence.keys import verify_signature
from station.cli import main as station_main
from station.verify import verify_audit
from tests.net import free_port
from tests.test_agent_e2e import DEVICE, start_monitor, write_config

ROOT = Path(__file__).resolve().parents[1]


def pid_agent(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def cli(capsys):
    """`pid-agent ...` (tool=station_main: `pid-station ...`) in this process (the replay that makes the data dir
    runs as its own process)."""
    def run(*args, tool=main) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = tool([str(arg) for arg in args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)
    return run


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> Path:
    """A data dir as a unit leaves it after a run without its broker: one alarm and its media in the outbox."""
    from evaluation.demo import write_demo

    folder = tmp_path_factory.mktemp("replayed")
    write_demo(folder / "demo.mp4", seconds=12.0, width=320, height=180)
    config = write_config(folder / "unit.toml", folder / "data", f"mqtt://127.0.0.1:{free_port()}")
    result = pid_agent("replay", folder / "demo.mp4", "--fast", "--offline", "--config", config)
    assert result.returncode == 0 and "wait in the outbox" in result.stdout, result.stderr
    return folder / "data"


@pytest.fixture
def unit(replayed, tmp_path) -> tuple[Path, Path]:
    """A copy of the replayed data dir, and a config naming it (broker: a port nobody listens on)."""
    data = tmp_path / "data"
    shutil.copytree(replayed, data)
    return write_config(tmp_path / "unit.toml", data, f"mqtt://127.0.0.1:{free_port()}"), data


def files(data: Path) -> dict[str, bytes]:
    """The data dir's files and contents, the outbox's SQLite side files aside (opening the outbox makes them)."""
    return {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def outbox_rows(data: Path) -> list[tuple]:
    with sqlite3.connect(data / "outbox.sqlite") as database:
        return database.execute("SELECT id, topic, kind, payload FROM messages ORDER BY id").fetchall()


def test_without_yes_nothing_is_done(unit, tmp_path, cli):
    config, data = unit
    before = files(data)
    result = cli("decommission", "--config", config, "--report", tmp_path / "report", "--offline")
    assert result.returncode == 1 and "--yes" in result.stderr
    assert files(data) == before and not (tmp_path / "report").exists()


def test_an_undelivered_outbox_without_export_is_refused_and_kept(unit, tmp_path, cli):
    config, data = unit
    before, rows = files(data), outbox_rows(data)
    result = cli("decommission", "--config", config, "--report", tmp_path / "report", "--yes",
                       "--drain-timeout", "0")
    assert result.returncode == 1
    assert f"still holds {len(rows)} message(s)" in result.stderr and "--export" in result.stderr
    assert "nothing was wiped" in result.stderr
    assert files(data) == before and outbox_rows(data) == rows  # not even an audit entry


def test_a_report_folder_inside_the_data_dir_is_refused(unit, cli):
    config, data = unit
    result = cli("decommission", "--config", config, "--report", data / "report", "--yes", "--offline",
                       "--export", data.parent / "export")
    assert result.returncode == 1 and "inside the data dir" in result.stderr and "audit.jsonl" in files(data)


def test_export_then_wipe_keeps_the_evidence_and_says_what_it_wiped(unit, tmp_path, cli):
    config, data = unit
    before, rows = files(data), outbox_rows(data)
    media = {name: body for name, body in before.items() if name.startswith("media/")}
    assert any(name.endswith("clip.mp4") for name in media) and any(n.endswith(".manifest.json") for n in media)
    report, export = tmp_path / "report", tmp_path / "export"
    result = cli("decommission", "--config", config, "--report", report, "--export", export, "--yes",
                       "--offline")
    assert result.returncode == 0, result.stderr

    # the wipe: every file, listed with its size; totals per category; nothing left
    for name, body in before.items():
        if name != "audit.jsonl":  # it grew by the last entry
            assert f"{len(body):>10} bytes  {name}\n" in result.stdout, name
    assert f"media: {len(media)} files, {sum(map(len, media.values()))} bytes" in result.stdout
    assert "keys: 1 files, 32 bytes" in result.stdout  # the unit's Ed25519 seed
    assert [p for p in data.rglob("*")] == [] and data.is_dir()

    # the export: every outbox row in order, and the media files byte for byte, still verifiable
    exported = [json.loads(line) for line in (export / "messages.jsonl").read_text().splitlines()]
    assert [(row["id"], row["topic"], row["kind"]) for row in exported] == [row[:3] for row in rows]
    events = [row["payload"] for row in exported if row["kind"] == "event"]
    assert [(e["kind"], e["phase"]) for e in events] == [("intrusion", "start"), ("intrusion", "end")]
    for name, body in media.items():
        assert (export / name).read_bytes() == body, name
    public_key = (report / "unit.pub").read_text().strip()
    clip = next(export.glob("media/*/clip.mp4"))
    verified = cli("verify", clip, "--public-key", public_key, tool=station_main)  # the station's check
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # the final report: the audit log's copy verifies with the unit's key and ends with the decommission entry
    assert verify_audit(report / "audit.jsonl", public_b64=public_key).ok
    last = json.loads((report / "audit.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "decommission" and last["data"]["exported_rows"] == len(rows)
    assert last["data"]["wipe"]["media"] == {"files": len(media), "bytes": sum(map(len, media.values()))}
    summary = json.loads((report / "decommission.json").read_text())
    body = {key: value for key, value in summary.items() if key != "sig"}
    assert verify_signature(public_key, canonical(body), summary["sig"])
    assert summary["device_id"] == DEVICE and summary["totals"]["keys"] == {"files": 1, "bytes": 32}
    loan = json.loads((report / "loan-report.json").read_text())
    assert loan["device_id"] == DEVICE and loan["audit_entries"] == len((report / "audit.jsonl").read_bytes()
                                                                         .splitlines())


@pytest.mark.broker
def test_the_outbox_is_delivered_to_the_broker_before_the_wipe(unit, mosquitto, tmp_path, cli):
    config, data = unit
    write_config(config, data, mosquitto.url)
    monitor = start_monitor(mosquitto, tmp_path / "received")
    try:
        result = cli("decommission", "--config", config, "--report", tmp_path / "report", "--yes",
                           "--drain-timeout", "30")
        assert result.returncode == 0, result.stderr
        assert "delivered to the broker" in result.stdout and not (tmp_path / "export").exists()
        assert monitor.wait_for(lambda m: len(m.events) >= 2 and len(m.media) >= 2, timeout=30)
        assert [event["phase"] for event in monitor.events] == ["start", "end"]
        assert all(item.verified for item in monitor.media.values())
    finally:
        monitor.stop()
    assert [p for p in data.rglob("*")] == []
    last = json.loads((tmp_path / "report" / "audit.jsonl").read_text().splitlines()[-1])
    assert last["data"]["delivered"] is True and last["data"]["exported_rows"] == 0


def test_a_data_dir_that_is_not_a_units_is_refused(tmp_path, cli):
    config = write_config(tmp_path / "unit.toml", tmp_path / "empty", "mqtt://127.0.0.1:1")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("keep me")
    result = cli("decommission", "--config", config, "--report", tmp_path / "report", "--yes", "--offline")
    assert result.returncode == 1 and "no audit log" in result.stderr
    assert (tmp_path / "empty" / "notes.txt").read_text() == "keep me"
