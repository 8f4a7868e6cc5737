"""Agent SIGKILLed at random moments across replays, restarted on the same data dir each time."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from station.monitor import Monitor
from tests.faults.harness import (
    DEVICE,
    SEGMENT_S,
    FaultResult,
    delivery_problems,
    long_or_short,
    media_expected,
    record,
    write_unit_config,
    write_walks,
)

ROOT = Path(__file__).resolve().parents[2]


def replay(recording: Path, config: Path, events: Path, log: Path, fast: bool = False) -> subprocess.Popen:
    args = [sys.executable, "-m", "agent", "replay", str(recording), "--config", str(config), "--events", str(events)]
    with log.open("w") as err:
        return subprocess.Popen(args + (["--fast"] if fast else []), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)


def outbox_state(data_dir: Path) -> tuple[str, int, list[str]]:
    """(integrity_check verdict, last seq handed out, media rows pointing at half-written files) of a dead agent."""
    db = sqlite3.connect(data_dir / "outbox.sqlite")
    try:
        verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
        seq = db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        partial = [path for (path,) in db.execute("SELECT path FROM media") if path.endswith(".part")]
    finally:
        db.close()
    return verdict, seq[0] if seq else 0, partial


def queued_events(folder: Path) -> list[dict]:
    """Every event an agent life wrote to its --events file (written after the outbox row is committed)."""
    events = []
    for path in sorted(folder.glob("events-*.jsonl"), key=lambda p: int(p.stem.split("-")[1])):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # the last line of a killed life may be cut short; its row is in the outbox regardless
    return events


@pytest.mark.faults
@pytest.mark.broker
@pytest.mark.slow
def test_agent_sigkilled_at_random_moments_restarts_clean_and_loses_nothing(mosquitto, tmp_path):
    kills = long_or_short(long=50, short=4)
    recording = write_walks(tmp_path / "walk.mp4", walks=1)
    data_dir = tmp_path / "data"
    config = write_unit_config(tmp_path / "agent.toml", data_dir, mosquitto.url, pre_roll_s=3.0)
    monitor = Monitor(mosquitto.url, DEVICE, tmp_path / "received", printer=lambda line: None)
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, timeout=10)
    chooser = random.Random(1717)
    problems, last_seq, survived = [], 0, 0
    for life in range(kills):
        log = tmp_path / f"agent-{life}.log"
        agent = replay(recording, config, tmp_path / f"events-{life}.jsonl", log)
        time.sleep(chooser.uniform(0.3, SEGMENT_S + 2.0))  # a random moment in this life: start-up to drain
        if agent.poll() is not None and agent.returncode != 0:
            problems.append(f"life {life} exited {agent.returncode}: {log.read_text()[-500:]}")
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        verdict, seq, partial = outbox_state(data_dir)
        if verdict != "ok":
            problems.append(f"after kill {life}: integrity_check {verdict}")
        if seq < last_seq:
            problems.append(f"after kill {life}: seq went back {last_seq} -> {seq}")
        if partial:
            problems.append(f"after kill {life}: half-written files queued: {partial}")
        survived += verdict == "ok" and seq >= last_seq and not partial
        last_seq = max(last_seq, seq)
    # a last life runs to the end: it recovers what the kills left and drains the outbox
    final = replay(recording, config, tmp_path / f"events-{kills}.jsonl", tmp_path / "agent-final.log", fast=True)
    assert final.wait(timeout=180) == 0, (tmp_path / "agent-final.log").read_text()[-2000:]
    verdict, seq, partial = outbox_state(data_dir)
    assert verdict == "ok" and seq >= last_seq and not partial

    expected = queued_events(tmp_path)
    arrived = lambda m: len(m.events) >= len(expected) and len(m.media) >= media_expected(expected)
    monitor.wait_for(arrived, timeout=60)
    monitor.stop()
    delivered, lost, duplicated = delivery_problems(monitor, expected)
    # an end event's clip must be the finished file; a killed recording is announced incomplete, never as done
    for event in monitor.events:
        if event.get("phase") == "end" and isinstance(event.get("clip"), dict):
            media = monitor.media.get((event["event_id"], event["clip"]["name"]))
            if media is None or not media.verified:
                delivered.append(f"clip of {event['event_id']} announced but not delivered whole")
    record(FaultResult("agent SIGKILL + restart", kills, survived, lost, duplicated, monitor.duplicates,
                       f"{len(expected)} events queued, {media_expected(expected)} media, final seq {seq}"))
    assert not problems, problems
    assert not delivered, delivered
