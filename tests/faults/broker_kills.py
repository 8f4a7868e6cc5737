"""The broker-kill check, shared by the fault test and its self-test against a broken build.

The broker is killed once per alarm, at the moment most likely to lose something: it is frozen (SIGSTOP) as the
station sees the alarm start, stays frozen while the agent queues and sends the alarm's clip and end (they sit
unread in the frozen broker's socket), and is then SIGKILLed like a crashed host and restarted. Whatever the
broker had not acknowledged must be sent again; a persistent QoS 1 station counts what arrives.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agent.config import parse_config
from agent.pipeline import Agent, RunSummary
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
    media_expected,
    sync_persistence,
    write_walks,
)


@dataclass
class KillRun:
    result: FaultResult
    problems: list[str]
    summary: RunSummary
    expected: list[dict]
    alarms: int


def _alarm_ended(agent: Agent, event_id: str) -> bool:
    return any(e.get("event_id") == event_id and e.get("phase") == "end" for e in list(agent.summary.events_published))


def _kill_during_alarm(broker, monitor: Monitor, agent: Agent, seen: set[str], chooser: random.Random) -> bool:
    """Wait for the next alarm's start at the station, freeze the broker until the agent has queued that alarm's
    end, then SIGKILL it and restart it after a while. False when no new alarm started in time."""
    fresh = lambda m: [e["event_id"] for e in m.events if e.get("kind") == "intrusion"
                       and e.get("phase") == "start" and e["event_id"] not in seen]
    if not monitor.wait_for(lambda m: bool(fresh(m)), timeout=SEGMENT_S * 3):
        return False
    event_id = fresh(monitor)[0]
    seen.add(event_id)
    broker.process.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + SEGMENT_S * 2  # waiting on the agent's own thread, not timing logic
    while not _alarm_ended(agent, event_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(chooser.uniform(0.3, 1.5))  # the uplink hands the clip and the end to the frozen broker's socket
    kill_broker(broker)  # SIGKILL works on a stopped process: what it had not read is lost with it
    time.sleep(chooser.uniform(0.5, 2.0))  # the broker stays down a while (fault timing on a real process)
    broker.start()
    return True


def run_broker_kills(broker, tmp_path: Path, walks: int, agent_type: type[Agent] = Agent,
                     settle_s: float = 60.0, label: str = "broker SIGKILL + restart") -> KillRun:
    """One replay of `walks` alarms in real time, the broker killed during each; what the station received."""
    broker.stop()
    sync_persistence(broker)
    broker.start()
    recording = write_walks(tmp_path / "walks.mp4", walks, tail_s=8.0)  # the last kill is over before it ends
    # a station with a persistent QoS 1 session: what the broker acknowledged while it was away is queued for it
    monitor = Monitor(broker.url, DEVICE, tmp_path / "received", printer=lambda line: None, session="station-f")
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, timeout=10)
    config = parse_config({"device_id": DEVICE, "data_dir": str(tmp_path / "data"),
                           "broker": {"url": broker.url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
                           "camera": {"backend": "replay", "source": str(recording), "realtime": True},
                           **ALARM_SETTINGS})
    clock = SystemClock()
    agent = agent_type(config, ReplayCamera(str(recording), clock=clock, realtime=True), clock, drain_timeout_s=60)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(summary=agent.run()), daemon=True)
    runner.start()
    chooser, seen = random.Random(17), set()  # seeded: a failure can be replayed
    kills = sum(_kill_during_alarm(broker, monitor, agent, seen, chooser) for _ in range(walks))
    runner.join(timeout=walks * SEGMENT_S + 130)
    assert not runner.is_alive(), "the agent did not finish its recording"
    summary = outcome["summary"]
    expected = list(summary.events_published)
    want_media = media_expected(expected)
    arrived = lambda m: (len(m.events) >= len(expected) and sum(1 for f in m.media.values() if f.verified)
                         >= want_media)
    monitor.wait_for(arrived, timeout=settle_s)
    monitor.stop()
    problems, lost, duplicated = delivery_problems(monitor, expected)
    alarms = sum(1 for e in expected if e["kind"] == "intrusion" and e.get("phase") == "start")
    result = FaultResult(label, kills, kills if not problems else 0, lost, duplicated, monitor.duplicates,
                         f"{alarms} alarms, {len(expected)} events, {want_media} media; killed mid-alarm")
    return KillRun(result, problems, summary, expected, alarms)
