"""Retention on the injected clock: media past outbox.retention_days are deleted from the supervisor's tick, each
deletion audited and reported evicted; media put on hold by a signed command stay until released."""

from __future__ import annotations

import base64
import contextlib
import json
import time

import pytest
from nacl.signing import SigningKey

from agent.commands import Received
from agent.config import parse_config
from agent.pipeline import Agent
from agent.security import sign
from agent.storage.media import file_sha256
from agent.storage_watch import RETENTION_EVERY_S
from common.clock import ManualClock
from common.errors import ConfigError
from drivers.camera.synthetic import SyntheticCamera

DAY = 86400.0
DEVICE = "pid-ret-01"


@contextlib.contextmanager
def unit(tmp_path, clock, station: SigningKey, **outbox):
    """The agent's real parts (outbox, audit log, control, supervisor) without a camera loop or an uplink."""
    config = parse_config({"device_id": DEVICE, "data_dir": str(tmp_path / "data"), "outbox": outbox,
                           "commands": {"station_keys": [{"id": "station", "public_key": base64.b64encode(
                               bytes(station.verify_key)).decode()}]}})
    agent = Agent(config, SyntheticCamera(clock=clock, width=160, height=90, fps=10.0, duration_s=1.0), clock,
                  upload=False)
    with contextlib.ExitStack() as stack:
        agent._open_storage(stack)
        agent._register_arc()
        agent._open_gpio(stack)
        agent._build_unit()
        yield agent


def media(agent, event_id: str, name: str = "snapshot.jpg", size: int = 5000) -> tuple:
    path = agent.outbox.media_dir / event_id / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes((i * 7 + len(event_id)) % 256 for i in range(size)))
    agent.outbox.put_media(event_id, name, path, "image/jpeg", 4096)
    return path, file_sha256(path)


def command(agent, station: SigningKey, clock, body: dict) -> dict:
    envelope = sign(body, DEVICE, station, "station", clock.wall())
    agent.submit_command(Received(json.dumps(envelope).encode()))
    agent.control.apply_commands(agent.timeline.at(0.0, 0))
    results = [json.loads(m.payload) for m in agent.outbox.pending(0, 10_000) if m.topic == "cmd/result"]
    return next(r for r in reversed(results) if r["id"] == body["id"])


def audit_entries(agent) -> list[dict]:
    return [json.loads(line) for line in agent.notary.audit.path.read_bytes().splitlines()]


def evicted_items(agent) -> list[dict]:
    events = [json.loads(m.payload) for m in agent.outbox.pending(0, 10_000) if m.topic == "event"]
    return [item for e in events if e["kind"] == "evicted" for item in e["items"]]


def test_old_media_are_deleted_and_audited_and_held_media_kept_until_released(tmp_path):
    clock, station = ManualClock(wall_start=time.time()), SigningKey.generate()
    with unit(tmp_path, clock, station) as agent:
        held, held_sha = media(agent, "ev-held")
        old, old_sha = media(agent, "ev-old")
        result = command(agent, station, clock, {"cmd": "hold", "id": "h-1", "event_id": "ev-held",
                                                 "reference": "case-42"})
        assert result["ok"] and "on hold" in result["detail"], result
        clock.advance(30 * DAY)  # within the 31-day default: nothing goes
        agent.supervisor.tick()
        assert held.exists() and old.exists()
        clock.advance(1 * DAY + 1)
        agent.supervisor.tick()
        assert not old.exists() and held.exists()
        deleted = [e["data"] for e in audit_entries(agent) if e["kind"] == "media_deleted"]
        assert deleted == [{"what": "media", "name": "snapshot.jpg", "event_id": "ev-old", "sha256": old_sha,
                            "bytes": 5000, "reason": "retention"}]
        assert [(i["event_id"], i["sha256"], i["reason"]) for i in evicted_items(agent)] == \
            [("ev-old", old_sha, "retention")]
        kinds = [e["kind"] for e in audit_entries(agent)]
        assert "hold" in kinds and "evicted" in kinds
        assert command(agent, station, clock, {"cmd": "release", "id": "r-1", "event_id": "ev-held"})["ok"]
        again = command(agent, station, clock, {"cmd": "release", "id": "r-2", "event_id": "ev-held"})
        assert not again["ok"] and "not on hold" in again["reason"]
        clock.advance(RETENTION_EVERY_S - 1)
        agent.supervisor.tick()  # passes run every RETENTION_EVERY_S on the injected clock: not yet
        assert held.exists()
        clock.advance(1)
        agent.supervisor.tick()
        assert not held.exists()
        assert ("ev-held", held_sha) in {(i["event_id"], i["sha256"]) for i in evicted_items(agent)}


def test_an_unsigned_hold_is_refused_and_holds_nothing(tmp_path):
    clock, station = ManualClock(wall_start=time.time()), SigningKey.generate()
    with unit(tmp_path, clock, station, retention_days=1) as agent:
        path, _ = media(agent, "ev-1")
        agent.submit_command(Received(json.dumps({"cmd": "hold", "id": "x", "event_id": "ev-1",
                                                  "reference": "r"}).encode()))
        agent.control.apply_commands(agent.timeline.at(0.0, 0))
        assert agent.outbox.holds() == set()
        clock.advance(DAY + 1)
        agent.supervisor.tick()
        assert not path.exists()


def test_retention_days_is_typed_and_a_bad_value_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="retention_days"):
        parse_config({"outbox": {"retention_days": 0}})
    with pytest.raises(ConfigError, match="retention_days"):
        parse_config({"outbox": {"retention_days": "a month"}})
