"""Network stall mid-clip: the broker is frozen (SIGSTOP) while media is on its way, then thawed (SIGCONT)."""

from __future__ import annotations

import signal
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
    long_or_short,
    media_expected,
    received_all,
    record,
    write_walks,
)


def watch_link(agent: Agent, links: list[tuple[float, bool]], done: threading.Event) -> None:
    """Note when the agent's uplink goes down and up (an observer; nothing is decided on these times)."""
    began, last = time.monotonic(), True
    while not done.wait(0.1):
        up = agent.uplink is not None and agent.uplink.connected
        if up != last:
            links.append((time.monotonic() - began, up))
            last = up


@pytest.mark.faults
@pytest.mark.broker
@pytest.mark.slow
def test_broker_frozen_mid_clip_then_the_clip_completes_verified(mosquitto, tmp_path):
    # frozen well past the keep-alive (5 s: paho pings after 5 s of silence and gives up 5 s later), so the agent
    # must notice a silently dead connection (no RST from a frozen process) while it is still frozen, and reconnect
    stall_s = long_or_short(long=25, short=15)
    walks = long_or_short(long=2, short=1)
    # the freeze begins ~7 s in, at the first alarm: the recording goes on past its end and the reconnect
    recording = write_walks(tmp_path / "walk.mp4", walks, tail_s=max(0.0, 7.0 + stall_s + 8.0 - walks * SEGMENT_S))
    monitor = Monitor(mosquitto.url, DEVICE, tmp_path / "received", printer=lambda line: None, session="station-s")
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, timeout=10)
    config = parse_config({"device_id": DEVICE, "data_dir": str(tmp_path / "data"),
                           "broker": {"url": mosquitto.url, "keepalive_s": 5, "reconnect_min_s": 0.2,
                                      "reconnect_max_s": 1.0, "chunk_bytes": 4096},
                           "camera": {"backend": "replay", "source": str(recording), "realtime": True},
                           **ALARM_SETTINGS})
    clock = SystemClock()
    agent = Agent(config, ReplayCamera(str(recording), clock=clock, realtime=True), clock, drain_timeout_s=90)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(summary=agent.run()), daemon=True)
    runner.start()
    # freeze the broker as soon as the first alarm starts: its snapshot, clip and end are still to come
    assert monitor.wait_for(lambda m: any(e.get("phase") == "start" for e in m.events), timeout=60)
    links: list[tuple[float, bool]] = []  # (seconds since the freeze, connected) at each change the agent shows
    watching = threading.Event()
    watcher = threading.Thread(target=watch_link, args=(agent, links, watching), daemon=True)
    mosquitto.process.send_signal(signal.SIGSTOP)
    watcher.start()
    time.sleep(stall_s)  # the stall is the fault being injected, on a real process
    mosquitto.process.send_signal(signal.SIGCONT)
    noticed = next((at for at, up in links if not up), None)
    runner.join(timeout=180)
    watching.set()
    watcher.join()
    assert not runner.is_alive(), "the agent did not finish after the stall"
    expected = list(outcome["summary"].events_published)
    received_all(monitor, expected, timeout=60)
    problems, lost, duplicated = delivery_problems(monitor, expected)
    back = next((at for at, up in links if up and noticed is not None and at > noticed), None)
    if noticed is None or noticed >= stall_s:
        problems.append(f"the silently dead connection was not noticed while the broker was frozen: {links}")
    if back is None:
        problems.append(f"the connection was not re-established after the thaw: {links}")
    record(FaultResult(f"broker frozen {stall_s} s (SIGSTOP)", 1, 0 if problems else 1, lost, duplicated,
                       monitor.duplicates, f"{media_expected(expected)} media in 4 KiB chunks; dead link noticed "
                       f"after {noticed if noticed is None else round(noticed, 1)} s (keep-alive 5 s), back "
                       f"{back if back is None else round(back - stall_s, 1)} s after the thaw"))
    assert media_expected(expected) == 2 * walks
    assert outcome["summary"].delivered
    assert not problems, problems
