"""Remote commands over a real broker: malformed ones are refused with a reason and the agent keeps going.

Commands are signed with a test station key the unit trusts (tests/test_security.py covers the unsigned ones)."""

from __future__ import annotations

import threading
import time

import pytest

from agent.commands import CommandError, Disarm, SetMode, parse_command
from agent.config import parse_config
from agent.pipeline import Agent
from agent.security import new_key_file, public_key_text
from common.clock import SystemClock
from drivers.camera.synthetic import SyntheticCamera
from station.command import send_command


@pytest.mark.parametrize("payload, reason", [
    (b"{bad", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"cmd": "explode"}', "does not match any of the expected tags"),
    (b'{"cmd": "set_mode", "mode": "loud"}', "mode: Input should be 'overt' or 'covert'"),
    (b'{"cmd": "arm", "force": true}', "force: Extra inputs are not permitted"),
])
def test_malformed_commands_are_refused_with_a_reason(payload, reason):
    with pytest.raises(CommandError, match=reason):
        parse_command(payload)


def test_valid_commands_parse_to_their_types():
    assert parse_command(b'{"cmd": "disarm", "id": "r1"}') == Disarm(cmd="disarm", id="r1")
    assert parse_command(b'{"cmd": "set_mode", "mode": "covert"}').mode == "covert"
    assert isinstance(parse_command(b'{"cmd": "set_mode", "mode": "overt"}'), SetMode)


class HeldCamera(SyntheticCamera):
    """The synthetic yard, held at one frame until the test releases it: the figure (at 6 s) cannot walk in before
    the commands have been answered, however slow the machine is."""

    def __init__(self, hold_at: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hold_at, self.released = hold_at, threading.Event()

    def frames(self):
        for frame in super().frames():
            if frame.index == self.hold_at:
                assert self.released.wait(timeout=120), "the test never released the camera"
            yield frame


@pytest.mark.broker
def test_commands_through_the_broker_change_the_running_agent(mosquitto, tmp_path):
    key_file = tmp_path / "station.key"
    key = new_key_file(key_file, "test-station")
    config = parse_config({"device_id": "pid-cmd", "data_dir": str(tmp_path / "data"),
                           "broker": {"url": mosquitto.url},
                           "commands": {"station_keys": [{"id": "test-station",
                                                          "public_key": public_key_text(key)}]}})
    # the figure walks in at 6 s; the unit is disarmed remotely before that, so there must be no alarm
    clock = SystemClock()
    camera = HeldCamera(hold_at=50, clock=clock, width=320, height=180, fps=10.0, duration_s=14.0, realtime=True)
    agent = Agent(config, camera, clock)
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        deadline = time.monotonic() + 20  # waiting for a real connection, not timing logic
        while not (agent.uplink is not None and agent.uplink.connected) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.uplink.connected, "the agent never connected"
        refused = send_command(mosquitto.url, "pid-cmd", '{"cmd": "self_destruct", "id": "bad-1"}',
                               timeout=20, key_file=key_file)
        assert refused is not None and refused["ok"] is False and refused["id"] == "bad-1"
        assert "self_destruct" in refused["reason"]
        garbled = send_command(mosquitto.url, "pid-cmd", '{"cmd": "set_mode", "mode": "loud"}',
                               timeout=20, key_file=key_file)
        assert garbled["ok"] is False and "overt" in garbled["reason"]
        done = send_command(mosquitto.url, "pid-cmd", '{"cmd": "disarm", "id": "d-1"}',
                               timeout=20, key_file=key_file)
        assert done == {**done, "ok": True, "cmd": "disarm", "id": "d-1", "detail": "disarmed"}
        overt = send_command(mosquitto.url, "pid-cmd", '{"cmd": "set_mode", "mode": "overt"}',
                               timeout=20, key_file=key_file)
        assert overt["ok"] is True and agent.signaller.mode == "overt"
    finally:
        camera.released.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    kinds = [(e["kind"], e.get("armed"), e.get("source")) for e in agent.summary.events_published]
    assert ("armed", False, "command") in kinds
    assert not any(kind == "intrusion" for kind, _, _ in kinds)
    assert agent.summary.frames == 140  # the refused commands did not stop the loop
