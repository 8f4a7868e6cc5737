"""Garbage on every input: the command topic, the recording, the config file. Each is refused with a reason (or
used as far as it is sound) and the agent keeps working; the station loses and doubles nothing."""

from __future__ import annotations

import json
import random
import sqlite3
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import load_config, parse_config
from agent.pipeline import Agent
from agent.security import new_key_file, public_key_text
from common.clock import SystemClock
from common.errors import AgentError, ConfigError
from drivers.camera.replay import ReplayCamera
from station.command import send_command
from station.monitor import Monitor
from tests.faults.garbage import command_payloads, corrupt_configs, corrupt_copies
from tests.faults.harness import (
    ALARM_SETTINGS,
    DEVICE,
    FaultResult,
    delivery_problems,
    long_or_short,
    received_all,
    record,
    write_walks,
)


def _garbage_sender(url: str, payloads: list[tuple[bytes, bool]]) -> None:
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="garbage", protocol=mqtt.MQTTv311)
    client.connect(host, int(port))
    client.loop_start()
    try:
        for payload, retained in payloads:
            client.publish(f"pids/{DEVICE}/cmd", payload, qos=1, retain=retained).wait_for_publish(10)
        client.publish(f"pids/{DEVICE}/cmd", b"", qos=1, retain=True).wait_for_publish(10)  # clear a retained one
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.faults
@pytest.mark.broker
@pytest.mark.slow
def test_garbage_on_the_command_topic_is_refused_and_the_unit_carries_on(mosquitto, tmp_path):
    count = long_or_short(long=900, short=150)  # answers are capped at 1000 refusals a minute (the maximum)
    walks = long_or_short(long=3, short=1)
    key_file = tmp_path / "station.key"
    key = new_key_file(key_file, "station-g")
    payloads = command_payloads(random.Random(1717), count, DEVICE, key, "station-g")
    recording = write_walks(tmp_path / "walks.mp4", walks)
    monitor = Monitor(mosquitto.url, DEVICE, tmp_path / "received", printer=lambda line: None, session="station-g")
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, timeout=10)
    config = parse_config({"device_id": DEVICE, "data_dir": str(tmp_path / "data"),
                           "broker": {"url": mosquitto.url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
                           "camera": {"backend": "replay", "source": str(recording), "realtime": True},
                           "commands": {"refusals_per_min": 1000,
                                        "station_keys": [{"id": "station-g", "public_key": public_key_text(key)}]},
                           **ALARM_SETTINGS})
    clock = SystemClock()
    agent = Agent(config, ReplayCamera(str(recording), clock=clock, realtime=True), clock, drain_timeout_s=60)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(summary=agent.run()), daemon=True)
    runner.start()
    assert monitor.wait_for(lambda m: m.statuses.get(DEVICE, {}).get("state") == "online", timeout=20)
    _garbage_sender(mosquitto.url, payloads)
    # after all that, a sound command still works
    answer = send_command(mosquitto.url, DEVICE, '{"cmd": "set_mode", "mode": "overt", "id": "after-garbage"}',
                          timeout=20, key_file=key_file)
    runner.join(timeout=walks * 14 + 90)
    assert not runner.is_alive(), "the agent did not finish"
    expected = list(outcome["summary"].events_published)
    received_all(monitor, expected, timeout=30)
    problems, lost, duplicated = delivery_problems(monitor, expected)
    refused = [r for r in monitor.command_results if r.get("ok") is False]
    reasonless = [r for r in refused if not r.get("reason")]
    accepted = [r for r in monitor.command_results if r.get("ok") and r.get("id") != "after-garbage"]
    alarms = sum(1 for e in expected if e["kind"] == "intrusion" and e.get("phase") == "start")
    works = answer is not None and answer["ok"] and agent.signaller.mode == "overt"
    injected = count + 1  # and the empty retained message that clears a retained one
    record(FaultResult("garbage on MQTT cmd", injected, len(refused) - len(reasonless) if works else 0, lost,
                       duplicated, monitor.duplicates,
                       f"{len(refused)} refused with a reason; a sound command after: {'ok' if works else 'FAILED'}; "
                       f"{alarms} of {walks} alarms"))
    assert works, answer
    assert not accepted, accepted[:3]
    assert not reasonless, reasonless[:3]
    assert len(refused) == injected, f"{len(refused)} of {injected} payloads answered"
    assert alarms == walks and outcome["summary"].frames == walks * 140
    assert not problems, problems


def _integrity(data_dir) -> str:
    db = sqlite3.connect(data_dir / "outbox.sqlite")
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


@pytest.mark.faults
@pytest.mark.slow
def test_damaged_recordings_are_refused_or_played_as_far_as_sound_and_the_unit_still_works(tmp_path):
    count = long_or_short(long=40, short=6)
    recording = write_walks(tmp_path / "walk.mp4", walks=1)
    copies = corrupt_copies(recording, tmp_path / "damaged", random.Random(1707), count)
    data_dir = tmp_path / "data"
    config = parse_config({"device_id": DEVICE, "data_dir": str(data_dir), **ALARM_SETTINGS})
    clock = SystemClock()
    outcomes, problems = [], []
    for path, how in copies:
        agent = Agent(config, ReplayCamera(str(path), clock=clock), clock, upload=False)
        try:
            agent.run()
            outcomes.append(("played", how, f"{agent.summary.frames} frames"))
        except AgentError as refused:  # a recording that fails ends its run with its error, said in words
            outcomes.append(("refused", how, str(refused)))
            if not str(refused):
                problems.append(f"{path.name}: refused without a reason")
        except Exception as exc:  # noqa: BLE001 - anything else is the finding this test is for
            problems.append(f"{path.name}: {type(exc).__name__}: {exc}")
        # played or cut short by the damage: an alarm it started is ended, and the outbox is sound
        phases = [(e["event_id"], e.get("phase")) for e in agent.summary.events_published if e["kind"] == "intrusion"]
        if {i for i, p in phases if p == "start"} != {i for i, p in phases if p == "end"}:
            problems.append(f"{path.name}: an alarm started without an end: {phases}")
        if _integrity(data_dir) != "ok":
            problems.append(f"after {path.name}: outbox integrity_check failed")
    # the same unit, the same data dir: a sound recording still gives its alarm
    after = Agent(config, ReplayCamera(str(recording), clock=clock), clock, upload=False).run()
    works = after.alarms == 1 and _integrity(data_dir) == "ok"
    refused = sum(1 for outcome in outcomes if outcome[0] == "refused")
    record(FaultResult("damaged replay file", count, count - len(problems) if works else 0, 0, 0, 0,
                       f"{refused} refused with a reason, {len(outcomes) - refused} played to their sound end; "
                       f"sound one after: {'alarm' if works else 'FAILED'}"))
    assert not problems, problems
    assert works


@pytest.mark.faults
def test_damaged_config_files_are_valid_or_refused_naming_the_file_and_the_problem(tmp_path):
    count = long_or_short(long=5000, short=300)
    texts = corrupt_configs(random.Random(1709), count, tmp_path / "data")
    path = tmp_path / "agent.toml"
    refused, loaded, problems = 0, 0, []
    for number, text in enumerate(texts):
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            load_config(path, environ={})
        except ConfigError as error:
            refused += 1
            message = str(error)
            if str(path) not in message or len(message.splitlines()) < 1 or len(message) > 4000:
                problems.append(f"case {number}: {message[:300]!r} for {text[:120]!r}")
            continue
        except Exception as exc:  # noqa: BLE001 - anything else is the finding this test is for
            problems.append(f"case {number}: {type(exc).__name__}: {exc} for {json.dumps(text[:200])}")
            continue
        loaded += 1
    record(FaultResult("damaged config file", count, count - len(problems), 0, 0, 0,
                       f"{refused} refused naming file and problem, {loaded} still valid"))
    assert refused > count // 2  # the damage was real
    assert not problems, problems[:5]
