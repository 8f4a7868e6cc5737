"""The agent against a real 3-node RabbitMQ cluster (rabbitmq_mqtt): its node is killed mid-alarm, it moves on."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from agent.config import parse_config
from agent.pipeline import Agent
from common.clock import SystemClock
from drivers.camera.replay import ReplayCamera
from station.monitor import Monitor
from tests.faults.harness import ALARM_SETTINGS, DEVICE, delivery_problems, media_expected, write_walks
from tests.footage import under_ci
from tests.rabbit_cluster import RabbitCluster, available


@pytest.fixture
def rabbit_cluster(tmp_path):
    # CI runs it (its installer brings rabbitmq-server); on a laptop the ~1.5 min boot waits for `make fleet`
    if os.environ.get("FLEET") != "1" and not under_ci():
        pytest.skip("the cluster takes ~1 min to boot and the test ~1.5 min: run by `make fleet` (FLEET=1)")
    if not available():
        if under_ci():
            pytest.fail("rabbitmq-server with rabbitmq_mqtt not installed, and CI=true requires the fleet tests")
        pytest.skip("rabbitmq-server (with its rabbitmq_mqtt plugin) not installed: apt-get install rabbitmq-server")
    cluster = RabbitCluster(tmp_path / "rabbit", size=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.fleet
@pytest.mark.slow
def test_node_killed_mid_alarm_agent_moves_on_and_station_gets_everything_once(rabbit_cluster, tmp_path, caplog):
    first, second, third = rabbit_cluster.nodes
    recording = write_walks(tmp_path / "walks.mp4", walks=2)
    # the station sits on another node than the agent; its persistent session's queue lives there
    monitor = Monitor(third.url, DEVICE, tmp_path / "received", printer=lambda line: None, session="station-r")
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, timeout=30)
    config = parse_config({"device_id": DEVICE, "data_dir": str(tmp_path / "data"),
                           "broker": {"url": first.url, "urls": [second.url, third.url], "chunk_bytes": 8192,
                                      "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
                           "camera": {"backend": "replay", "source": str(recording), "realtime": True},
                           **ALARM_SETTINGS})
    clock = SystemClock()
    agent = Agent(config, ReplayCamera(str(recording), clock=clock, realtime=True), clock, drain_timeout_s=90)
    outcome = {}
    caplog.set_level(logging.INFO, logger="agent.uplink.client")
    runner = threading.Thread(target=lambda: outcome.update(summary=agent.run()), daemon=True)
    runner.start()
    assert monitor.wait_for(lambda m: any(e["phase"] == "start" for e in m.events), timeout=60)
    first.kill()  # mid-alarm: the snapshot, clip and end are still to come
    runner.join(timeout=180)
    assert not runner.is_alive(), "the agent did not finish"
    expected = list(outcome["summary"].events_published)
    arrived = lambda m: (len(m.events) >= len(expected)
                         and sum(1 for f in m.media.values() if f.verified) >= media_expected(expected))
    monitor.wait_for(arrived, timeout=60)
    monitor.stop()

    problems, lost, duplicated = delivery_problems(monitor, expected)
    assert not problems, problems
    assert media_expected(expected) == 4 and outcome["summary"].delivered
    moved = [r.getMessage() for r in caplog.records if r.getMessage().startswith("uplink connected to")]
    assert moved[0].endswith(f":{first.mqtt_port}") and moved[-1].endswith(f":{second.mqtt_port}"), moved
