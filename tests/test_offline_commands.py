"""A command sent while the unit is offline waits on the broker (the unit's persistent session, QoS 1, never a
retained message) and reaches the unit when it returns: applied within its signed expiry, refused once expired.

One real mosquitto with persistence in its config, never restarted: only the unit goes away and comes back."""

from __future__ import annotations

import json
import queue
import re
import time

import pytest

from agent.commands import CommandError, Gate, Received
from agent.security import CommandSettings, StationKey, new_key_file, public_key_text
from agent.storage.nonces import CommandStore
from agent.storage.outbox import Outbox
from agent.uplink.client import Uplink
from common.clock import ManualClock
from station.command import send_command
from tests.test_uplink import settings

pytestmark = pytest.mark.broker

DEVICE = "pid-away"
ROOT = f"pids/{DEVICE}"
NET_TIMEOUT = 20.0


def online(url: str, outbox: Outbox, clock: ManualClock, received: queue.Queue) -> Uplink:
    """The unit's uplink, connected with its command subscription acknowledged."""
    uplink = Uplink(settings(url), ROOT, DEVICE, outbox, clock, "1.0")
    uplink.on_command = received.put
    uplink.start()
    assert uplink.wait_listening(NET_TIMEOUT), uplink.last_error
    return uplink


def test_commands_sent_while_offline_arrive_on_return_and_expiry_decides(mosquitto_persistent, tmp_path):
    broker = mosquitto_persistent
    key_file = tmp_path / "station.key"
    station_key = new_key_file(key_file, "st")
    commands = CommandSettings(station_keys=(StationKey(id="st", public_key=public_key_text(station_key)),))
    clock = ManualClock(wall_start=time.time())  # the unit's clock: moved by the test, never slept on
    outbox = Outbox(tmp_path / "unit", 64 * 1024 * 1024, clock)
    store = CommandStore(tmp_path / "unit")
    received: queue.Queue[Received] = queue.Queue()
    try:
        # the unit has been online once: the broker keeps its session (client id, cmd subscription) when it leaves
        online(broker.url, outbox, clock, received).stop()
        # the station sends two signed commands while it is away (the unit cannot answer: no result in 0.5 s)
        assert send_command(broker.url, DEVICE, '{"cmd": "disarm", "id": "long"}', 0.5, key_file, ttl_s=600) is None
        assert send_command(broker.url, DEVICE, '{"cmd": "arm", "id": "short"}', 0.5, key_file, ttl_s=30) is None
        assert received.empty()
        clock.advance(120)  # two minutes later, by the unit's clock, it is back
        uplink = online(broker.url, outbox, clock, received)
        try:
            arrived = [received.get(timeout=NET_TIMEOUT) for _ in range(2)]
            assert uplink.connects == 1
        finally:
            uplink.stop()
        gate = Gate(commands, DEVICE, store)
        ids = [json.loads(message.payload)["cmd"]["id"] for message in arrived]
        assert ids == ["long", "short"]  # in the order sent, each once
        assert not any(message.retained for message in arrived)  # queued in the session, not retained
        assert gate.admit(arrived[0], clock.wall()).cmd == "disarm"  # issued 2 min ago, good for 10
        with pytest.raises(CommandError, match=r"expired \d+ s ago") as refused:
            gate.admit(arrived[1], clock.wall())
        # 120 s away less its 30 s life: 90 s, less the real seconds the station took to send it after the unit left
        late_s = int(re.search(r"expired (\d+) s ago", str(refused.value)).group(1))
        assert 60 <= late_s <= 90
        # a second return gets nothing again: the broker delivered each command once (acknowledged, not kept)
        again = online(broker.url, outbox, clock, received)
        again.stop()
        assert received.empty()
    finally:
        store.close()
        outbox.close()
