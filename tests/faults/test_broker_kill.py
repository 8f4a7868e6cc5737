"""Broker SIGKILLed and restarted while the agent replays a recording with several alarms in real time."""

from __future__ import annotations

import random
import threading
import time

import pytest

from agent.config import parse_config
from agent.pipeline import Agent
from common.clock import SystemClock
from drivers.camera.replay import ReplayCamera
from station.monitor import Monitor
from tests.faults.harness import (
    ALARM_SETTINGS,
    DEVICE,
    SEGMENT_S,
    FaultResult,
    delivery_problems,
    kill_broker,
    long_or_short,
    media_expected,
    record,
    sync_persistence,
    write_walks,
)


@pytest.mark.faults
@pytest.mark.broker
@pytest.mark.slow
def test_broker_sigkilled_during_alarms_loses_and_duplicates_nothing(mosquitto_persistent, tmp_path):
    broker = mosquitto_persistent
    kills = long_or_short(long=10, short=3)
    walks = long_or_short(long=10, short=3)
    broker.stop()
    sync_persistence(broker)
    broker.start()
    recording = write_walks(tmp_path / "walks.mp4", walks)
    # a station with a persistent QoS 1 session: what the broker acknowledged while it was away is queued for it
    monitor = Monitor(broker.url, DEVICE, tmp_path / "received", printer=lambda line: None, session="station-f")
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, timeout=10)
    config = parse_config({"device_id": DEVICE, "data_dir": str(tmp_path / "data"),
                           "broker": {"url": broker.url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
                           "camera": {"backend": "replay", "source": str(recording), "realtime": True},
                           **ALARM_SETTINGS})
    clock = SystemClock()
    agent = Agent(config, ReplayCamera(str(recording), clock=clock, realtime=True), clock, drain_timeout_s=60)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(summary=agent.run()), daemon=True)
    runner.start()

    # kills at random moments across the recording (seeded: a failure can be replayed)
    moments = sorted(random.Random(17).uniform(2.0, walks * SEGMENT_S - 1.0) for _ in range(kills))
    began = time.monotonic()
    for moment in moments:
        time.sleep(max(0.0, moment - (time.monotonic() - began)))  # fault timing on a real process
        kill_broker(broker)
        time.sleep(random.Random(moment).uniform(0.5, 2.0))  # the broker stays down a while
        broker.start()
    runner.join(timeout=walks * SEGMENT_S + 120)
    assert not runner.is_alive(), "the agent did not finish its recording"
    summary = outcome["summary"]
    expected = list(summary.events_published)
    want_media = media_expected(expected)
    arrived = lambda m: (len(m.events) >= len(expected) and sum(1 for f in m.media.values() if f.verified)
                         >= want_media)
    monitor.wait_for(arrived, timeout=60)
    monitor.stop()

    problems, lost, duplicated = delivery_problems(monitor, expected)
    alarms = sum(1 for e in expected if e["kind"] == "intrusion" and e.get("phase") == "start")
    record(FaultResult("broker SIGKILL + restart", kills, kills if not problems else 0, lost, duplicated,
                       monitor.duplicates, f"{alarms} alarms, {len(expected)} events, {want_media} media"))
    assert alarms == walks, [(e["kind"], e.get("phase")) for e in expected]
    assert summary.delivered and summary.outbox_depth == 0
    assert not problems, problems
