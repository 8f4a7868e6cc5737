"""The unit signs what it says: events and command results leave the Publisher signed with the unit's key, and the
monitor, given the unit's public key, tells them from forgeries published by any other client on the broker."""

from __future__ import annotations

import json

import paho.mqtt.publish as publish
import pytest

from agent.evidence.audit import canonical
from agent.evidence.keys import UnitKey
from agent.storage.outbox import Outbox
from agent.uplink import messages
from agent.uplink.client import Uplink
from agent.uplink.publisher import Publisher
from common.clock import SystemClock
from common.errors import ConfigError
from station.monitor import Monitor, load_unit_keys, signature_verdict
from tests import payloads
from tests.test_uplink import settings

DEVICE = "unit-9"
ROOT = f"pids/{DEVICE}"
NET_TIMEOUT = 20.0


@pytest.fixture
def unit(tmp_path):
    """The unit's side: its own key, a real outbox and the Publisher that signs."""
    key = UnitKey.load_or_create(tmp_path / "agent")
    box = Outbox(tmp_path / "agent", 64 * 1024 * 1024, SystemClock())
    yield key, box, Publisher(box, 4096, key=key)
    box.close()


def alarm_start(event_id: str, **fields):
    return lambda seq: messages.AlarmStart(**payloads.envelope(event_id, seq), score=0.4, boxes=[[1, 2, 3, 4]],
                                           image_size=[1280, 720], zone="gate", confirmed_by=["video"], **fields)


def result(command_id: str, ok: bool = True) -> messages.CommandResult:
    return messages.CommandResult(device_id=DEVICE, site_ref="S", ts="2026-11-25T08:46:12.400Z", id=command_id,
                                  ok=ok, cmd="disarm", detail="disarmed" if ok else None,
                                  reason=None if ok else "unsigned")


def test_publisher_signs_the_canonical_payload_and_the_models_accept_it(unit):
    key, box, publisher = unit
    payload = publisher.event(alarm_start("e1", bearings_deg=[12.5], sectors=["N"]))
    assert payload["key"] == key.id and isinstance(payload["sig"], str)
    messages.EVENT.validate_python(payload)  # the contract accepts the signed payload
    assert signature_verdict(payload, key.public_b64()) == "verified"
    # the signature covers every field, the key id included
    for name, value in (("score", 0.41), ("zone", "elsewhere"), ("key", "0" * 16), ("seq", payload["seq"] + 1)):
        assert signature_verdict({**payload, name: value}, key.public_b64()) != "verified", name
    unsigned = {name: value for name, value in payload.items() if name not in ("key", "sig")}
    assert signature_verdict(unsigned, key.public_b64()) == "unsigned"
    # what is queued for the wire is what was signed, byte for byte after a JSON round trip
    queued = json.loads(canonical(payload))
    assert signature_verdict(queued, key.public_b64()) == "verified"
    publisher.command_result(result("c1"))
    publisher.heartbeat(messages.Heartbeat.model_validate(payloads.heartbeat()))
    assert box.depth() == 3
    queued_beat = json.loads(box.pending(0, 10)[-1].payload)  # a heartbeat is signed like the rest
    assert queued_beat["key"] == key.id and signature_verdict(queued_beat, key.public_b64()) == "verified"
    assert signature_verdict({**queued_beat, "armed": False}, key.public_b64()) == "forged"


def test_without_a_key_nothing_is_signed_and_the_wire_is_unchanged(tmp_path):
    box = Outbox(tmp_path / "agent", 64 * 1024 * 1024, SystemClock())
    try:
        payload = Publisher(box, 4096).event(alarm_start("e1"))
    finally:
        box.close()
    assert "key" not in payload and "sig" not in payload
    assert "key" not in result("c1").wire() and "sig" not in result("c1").wire()
    assert "key" not in payloads.heartbeat() and "sig" not in payloads.status("online")


@pytest.mark.broker
def test_monitor_verifies_the_units_messages_and_flags_a_forgery(mosquitto, unit):
    key, box, publisher = unit
    lines: list[str] = []
    monitor = Monitor(mosquitto.url, DEVICE, None, printer=lines.append, unit_keys={DEVICE: key.public_b64()})
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, NET_TIMEOUT)
    genuine = publisher.event(alarm_start("e1"))
    publisher.command_result(result("c1"))
    uplink = Uplink(settings(mosquitto.url), ROOT, DEVICE, box, SystemClock(), "1.0", key=key)
    uplink.start()
    try:
        assert uplink.wait_drained(NET_TIMEOUT)
        assert monitor.wait_for(lambda m: m.events and m.command_results, NET_TIMEOUT)
        # the event, the result and the 'online' status (sent on connect, before any outbox row)
        assert monitor.verified == 3 and monitor.forged == 0 and monitor.unverified == 0
        assert monitor.events[0]["sig"] == genuine["sig"]
        # an attacker on the same broker: a plain paho client, a well-formed alarm, forged or unsigned
        forged = {**payloads.alarm_start("e2"), "key": key.id, "sig": genuine["sig"]}
        unsigned = payloads.alarm_start("e3")
        stolen = {**genuine, "score": 0.99, "event_id": "e4"}  # a genuine signature on altered content
        fake_result = {**result("c2").wire(), "key": key.id, "sig": genuine["sig"]}
        publish.multiple([{"topic": f"{ROOT}/event", "payload": json.dumps(p), "qos": 1}
                          for p in (forged, unsigned, stolen)]
                         + [{"topic": f"{ROOT}/cmd/result", "payload": json.dumps(fake_result), "qos": 1}],
                         hostname="127.0.0.1", port=mosquitto.port)
        assert monitor.wait_for(lambda m: m.forged + m.unverified == 4, NET_TIMEOUT)
        assert monitor.forged == 3 and monitor.unverified == 1 and monitor.verified == 3
    finally:
        uplink.stop()
        monitor.stop()
    assert [e["event_id"] for e in monitor.events] == ["e1"]  # no forgery is taken as the unit's event
    assert [r["id"] for r in monitor.command_results] == ["c1"]
    assert any("EVENT start e1" in line and line.endswith("VERIFIED") for line in lines)
    assert any("e2" in line and line.endswith("FORGED") for line in lines)
    assert any("e3" in line and "UNVERIFIED (unsigned)" in line for line in lines)
    assert any("id=c2" in line and line.endswith("FORGED") for line in lines)


def test_unit_keys_file_and_bad_keys_are_config_errors(tmp_path, unit):
    key = unit[0]
    keys = tmp_path / "units.keys"
    keys.write_text(f"# station's list\n{DEVICE} {key.public_b64()}  # the gate camera\n\n{key.public_b64()}\n")
    assert load_unit_keys(keys) == {DEVICE: key.public_b64(), "*": key.public_b64()}
    keys.write_text(f"{DEVICE} not-a-key\n")
    with pytest.raises(ConfigError, match="line 1"):
        load_unit_keys(keys)
    with pytest.raises(ConfigError, match="unit keys file"):
        load_unit_keys(tmp_path / "missing.keys")
    with pytest.raises(ConfigError, match="unit key for unit-9"):
        Monitor("mqtt://127.0.0.1:1883", DEVICE, None, unit_keys={DEVICE: "QUJD"})


@pytest.mark.broker
def test_heartbeats_and_statuses_are_signed_and_spoofs_are_kept_apart(mosquitto, unit):
    key, box, publisher = unit
    lines: list[str] = []
    monitor = Monitor(mosquitto.url, DEVICE, None, printer=lines.append, unit_keys={DEVICE: key.public_b64()})
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, NET_TIMEOUT)
    publisher.heartbeat(messages.Heartbeat.model_validate(payloads.heartbeat()))
    uplink = Uplink(settings(mosquitto.url), ROOT, DEVICE, box, SystemClock(), "1.0", key=key)
    uplink.start()
    try:
        assert uplink.wait_drained(NET_TIMEOUT)
        assert monitor.wait_for(lambda m: m.heartbeats and DEVICE in m.statuses, NET_TIMEOUT)
        genuine, online = monitor.heartbeats[0], monitor.statuses[DEVICE]
        assert online["state"] == "online" and online["key"] == key.id and genuine["key"] == key.id
        assert monitor.verified == 2 and monitor.forged == monitor.unverified == 0
        messages.Heartbeat.model_validate(genuine)  # the contract accepts what the unit signed
        messages.Status.model_validate(online)
        # an attacker on the broker: the unit disarmed, the unit stopped; unsigned, or a genuine signature reused
        quiet = {**genuine, "armed": False}
        unsigned_beat = {name: value for name, value in quiet.items() if name not in ("key", "sig")}
        stopped = {**online, "state": "stopped"}
        unsigned_status = {name: value for name, value in stopped.items() if name not in ("key", "sig")}
        publish.multiple([{"topic": f"{ROOT}/heartbeat", "payload": json.dumps(p), "qos": 1}
                          for p in (quiet, unsigned_beat)]
                         + [{"topic": f"{ROOT}/status", "payload": json.dumps(p), "qos": 1}
                            for p in (stopped, unsigned_status)], hostname="127.0.0.1", port=mosquitto.port)
        assert monitor.wait_for(lambda m: m.forged + m.unverified == 4, NET_TIMEOUT)
        assert monitor.forged == 2 and monitor.unverified == 2
        assert monitor.heartbeats == [genuine] and monitor.statuses[DEVICE] == online  # the unit's state stands
        assert len(monitor.rejected) == 4
    finally:
        uplink.stop()
        monitor.stop()
    assert any("HEARTBEAT" in line and "armed=False" in line and line.endswith("FORGED") for line in lines)
    assert any("HEARTBEAT" in line and "UNVERIFIED (unsigned)" in line for line in lines)
    assert any("STATUS stopped" in line and line.endswith("FORGED") for line in lines)
    assert any("STATUS online" in line and line.endswith("VERIFIED") for line in lines)
