"""Issue 10's attacks, reproduced: through a real mosquitto against a running agent, and on the gate with real SQLite.

Each is shown harmless: refused with a reason, the unit still armed and running, nothing crashed."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.publish as publish
import pytest
from nacl.signing import SigningKey

from agent.commands import CommandError, Gate, Received
from agent.config import parse_config
from agent.pipeline import Agent
from agent.security import CommandSettings, StationKey, load_key_file, new_key_file, public_key_text, sign
from agent.storage.nonces import CommandStore
from common.clock import SystemClock
from common.errors import ConfigError
from drivers.camera.synthetic import SyntheticCamera
from station.monitor import Monitor

DEVICE = "pid-sec"
NOW = 1_800_000_000.0
KEY = SigningKey(b"\x01" * 32)


def settings_for(key: SigningKey = KEY, key_id: str = "st") -> CommandSettings:
    return CommandSettings(station_keys=(StationKey(id=key_id, public_key=public_key_text(key)),))


def signed(command: dict, *, now: float = NOW, device: str = DEVICE, key: SigningKey = KEY, key_id: str = "st",
           ttl_s: int = 30) -> bytes:
    return json.dumps(sign(command, device, key, key_id, now, ttl_s)).encode()


@pytest.fixture
def gate(tmp_path):
    store = CommandStore(tmp_path / "data")
    yield Gate(settings_for(), DEVICE, store)
    store.close()


def refusal(gate: Gate, payload: bytes, now: float = NOW, retained: bool = False) -> str:
    with pytest.raises(CommandError) as refused:
        gate.admit(Received(payload, retained=retained), now)
    return str(refused.value)


def test_a_signed_command_for_this_unit_is_accepted(gate):
    assert gate.admit(Received(signed({"cmd": "disarm", "id": "r1"})), NOW).cmd == "disarm"


@pytest.mark.parametrize("payload, reason", [
    (b'{"cmd": "disarm"}', "unsigned"),
    (signed({"cmd": "disarm"}, key=SigningKey(b"\x02" * 32)), "bad signature"),
    (signed({"cmd": "disarm"}, key_id="intruder"), "unknown key id"),
    (signed({"cmd": "disarm"}, device="pid-other"), "another device"),
    (signed({"cmd": "disarm"}, now=NOW - 100), "expired"),
    (signed({"cmd": "disarm"}, now=NOW + 21), "in the future"),
    (signed({"cmd": "disarm"}, ttl_s=10 ** 6), "expiry outside"),
    (b"[" * 1000, "nested too deeply"),
    (b'{"cmd": ' + b"9" * 4301 + b"}", "number too long"),
    (b'{"cmd": {"cmd": "disarm", "id": "\\ud800"}, "sig": "x"}', "lone surrogate"),
    (b" " * 1_200_000, "too large"),
    (b"\xff\xfe", "not valid UTF-8"),
])
def test_each_attack_is_refused_with_its_reason(gate, payload, reason):
    assert reason in refusal(gate, payload)


def test_a_command_is_good_until_its_expiry_not_the_issue_window(gate):
    """Queued by the broker for an offline unit, a command issued 10 minutes ago still applies within its hour; one
    second past its expiry it does not, and once applied it cannot apply again."""
    queued = signed({"cmd": "disarm", "id": "q1"}, now=NOW - 600, ttl_s=3600)
    assert gate.admit(Received(queued), NOW).cmd == "disarm"
    assert "replayed" in refusal(gate, queued, now=NOW + 1)
    assert "expired 1 s ago" in refusal(gate, signed({"cmd": "arm"}, now=NOW - 601, ttl_s=600))


def test_a_tampered_envelope_fails_its_signature(gate):
    envelope = json.loads(signed({"cmd": "arm"}))
    envelope["cmd"] = {"cmd": "disarm"}
    assert "bad signature" in refusal(gate, json.dumps(envelope).encode())


def test_retained_commands_are_never_applied(gate):
    assert "retained" in refusal(gate, signed({"cmd": "disarm"}), retained=True)


def test_a_replayed_nonce_is_refused_even_after_a_restart(tmp_path):
    payload = signed({"cmd": "disarm"})
    first = CommandStore(tmp_path / "data")
    assert Gate(settings_for(), DEVICE, first).admit(Received(payload), NOW).cmd == "disarm"
    first.close()
    restarted = CommandStore(tmp_path / "data")
    assert "replayed" in refusal(Gate(settings_for(), DEVICE, restarted), payload, now=NOW + 1)
    restarted.close()
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "data" / "commands.sqlite").stat().st_mode & 0o777 == 0o600


def test_a_unit_without_station_keys_accepts_nothing(tmp_path):
    store = CommandStore(tmp_path / "data")
    closed = Gate(CommandSettings(), DEVICE, store)
    assert "no station key configured" in refusal(closed, signed({"cmd": "arm"}))
    store.close()


def test_key_files_are_private_and_round_trip(tmp_path):
    path = tmp_path / "station.key"
    key = new_key_file(path, "ops-1")
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_key_file(path) == ("ops-1", key)
    with pytest.raises(ConfigError, match="exists"):
        new_key_file(path, "ops-1")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_key_file(path)


@pytest.mark.parametrize("broker, problem", [
    ({"topic_root": "a/#"}, "wildcards"), ({"topic_root": "+"}, "wildcards"), ({"topic_root": "{x}"}, "braces"),
    ({"topic_root": "pids/../x"}, "'..'"), ({"url": "mqtt://h:0"}, "1-65535"), ({"url": "mqtt://h:99999"}, "1-65535"),
])
def test_broker_settings_that_could_never_work_are_refused(broker, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_config({"broker": broker})


@pytest.mark.parametrize("data, problem", [
    ({"device_id": ".."}, "dots only"), ({"data_dir": "var/\0x"}, "NUL"),
    ({"commands": {"station_keys": [{"id": "s", "public_key": "abc"}]}}, "base64"),
])
def test_config_values_that_would_be_dangerous_are_refused(data, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_config(data)


# ---- through a real broker --------------------------------------------------------------------------------

def _results_monitor(url: str) -> Monitor:
    monitor = Monitor(url, DEVICE, None, printer=lambda line: None)
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, timeout=20)
    return monitor


@pytest.mark.broker
def test_attacks_through_the_broker_leave_the_unit_armed_and_running(mosquitto, tmp_path):
    port, topic = mosquitto.port, f"pids/{DEVICE}/cmd"
    key = SigningKey.generate()
    # a retained disarm waits on the broker before the unit even connects
    publish.single(topic, json.dumps({"cmd": "disarm", "id": "ret"}), qos=1, retain=True, hostname="127.0.0.1",
                   port=port)
    config = parse_config({"device_id": DEVICE, "data_dir": str(tmp_path / "data"), "broker": {"url": mosquitto.url},
                           "commands": {"station_keys": [{"id": "st", "public_key": public_key_text(key)}],
                                        "refusals_per_min": 50}})
    clock = SystemClock()
    camera = SyntheticCamera(clock=clock, width=320, height=180, fps=10.0, duration_s=14.0, realtime=True)
    agent = Agent(config, camera, clock)
    monitor = _results_monitor(mosquitto.url)
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        # the retained disarm is refused as soon as the unit subscribes
        assert monitor.wait_for(lambda m: len(m.command_results) >= 1, timeout=20)
        good = signed({"cmd": "set_mode", "mode": "covert", "id": "ok-1"}, now=time.time(), key=key)
        attacks = [json.dumps({"cmd": "disarm", "id": "anon"}).encode(), b"[" * 1000,
                   b'{"cmd": ' + b"9" * 4301 + b"}", b'{"cmd": {"cmd": "disarm", "id": "\\ud800"}}',
                   b"x" * 1_200_000, good, good,
                   signed({"cmd": "disarm", "id": "old"}, now=time.time() - 100, key=key)]
        publish.multiple([{"topic": topic, "payload": p, "qos": 1} for p in attacks], hostname="127.0.0.1",
                         port=port)
        assert monitor.wait_for(lambda m: len(m.command_results) >= 1 + len(attacks), timeout=20)
        assert runner.is_alive(), "an attack stopped the agent"
    finally:
        runner.join(timeout=60)
        monitor.stop()
    results = monitor.command_results
    reasons = [r.get("reason", "") for r in results if not r["ok"]]
    for expected in ("retained", "unsigned", "nested too deeply", "number too long", "lone surrogate",
                     "too large", "replayed", "expired"):
        assert any(expected in reason for reason in reasons), (expected, reasons)
    assert [r["id"] for r in results if r["ok"]] == ["ok-1"]  # only the signed command acted, and only once
    assert all(len(json.dumps(r)) < 600 for r in results)  # no result echoes the payload
    kinds = [e["kind"] for e in agent.summary.events_published]
    assert "armed" not in kinds and "intrusion" in kinds  # never disarmed: the figure at 6 s raised an alarm
    assert agent.summary.frames == 140


def _offline_run(config, clock, *commands: bytes) -> Agent:
    camera = SyntheticCamera(clock=clock, width=320, height=180, fps=10.0, duration_s=14.0, realtime=False)
    agent = Agent(config, camera, clock, upload=False)
    for payload in commands:
        agent.submit_command(Received(payload))
    agent.run()
    return agent


def test_a_commanded_disarm_survives_the_schedule_and_a_restart(tmp_path):
    key = SigningKey.generate()
    config = parse_config({"device_id": DEVICE, "data_dir": str(tmp_path / "data"),
                           "commands": {"station_keys": [{"id": "st", "public_key": public_key_text(key)}]}})
    clock = SystemClock()
    disarm = signed({"cmd": "disarm"}, now=clock.wall(), key=key)
    overt = signed({"cmd": "set_mode", "mode": "overt"}, now=clock.wall(), key=key)
    first = list(_offline_run(config, clock, disarm, overt).summary.events_published)
    assert [(e["kind"], e.get("armed")) for e in first if e["kind"] == "armed"] == [("armed", False)]
    assert not any(e["kind"] == "intrusion" for e in first)  # the schedule's first report did not re-arm it
    restarted = _offline_run(config, clock)
    second = list(restarted.summary.events_published)
    assert restarted.signaller.mode == "overt"
    assert [(e["kind"], e.get("source")) for e in second if e["kind"] == "armed"] == [("armed", "command")]
    assert not any(e["kind"] == "intrusion" for e in second)
