"""The uplink and monitor end to end through a real mosquitto, with a real SQLite outbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.config import BrokerSettings
from agent.evidence.keys import UnitKey
from agent.storage.outbox import Outbox
from agent.uplink.client import Uplink
from common.clock import SystemClock
from station.monitor import Monitor, signature_verdict
from tests import payloads
from tests.conftest import reap

pytestmark = pytest.mark.broker
DEVICE = "unit-7"
ROOT = f"pids/{DEVICE}"
NET_TIMEOUT = 20.0  # generous bound on real network waits; tests finish as soon as the condition holds


def settings(url: str, **extra) -> BrokerSettings:
    return BrokerSettings(url=url, reconnect_min_s=0.1, reconnect_max_s=0.5, keepalive_s=5, **extra)


def queue_alarm(box: Outbox, event_id: str, clip_bytes: int, chunk_bytes: int) -> None:
    seq = box.next_seq()
    box.put_message("event", payloads.alarm_start(event_id, seq), "event")
    clip = box.media_dir / event_id / "clip.mp4"
    clip.parent.mkdir(parents=True, exist_ok=True)
    clip.write_bytes(os.urandom(clip_bytes))
    manifest = box.put_media(event_id, "clip.mp4", clip, "video/mp4", chunk_bytes)
    clip_ref = {"name": "clip.mp4", "bytes": clip_bytes, "sha256": manifest["sha256"]}
    box.put_message("event", payloads.alarm_end(event_id, box.next_seq(), clip=clip_ref), "event")


def watch(url: str, out_dir: Path, session: str | None = None) -> Monitor:
    monitor = Monitor(url, DEVICE, out_dir, printer=lambda line: None, session=session)
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, NET_TIMEOUT), "monitor never subscribed"
    return monitor


@pytest.fixture
def box(tmp_path):
    outbox = Outbox(tmp_path / "agent", 256 * 1024 * 1024, SystemClock())
    yield outbox
    outbox.close()




def test_events_and_media_arrive_in_order_and_verified(mosquitto, box, tmp_path):
    monitor = watch(mosquitto.url, tmp_path / "received")
    sent = {}
    for n in range(3):
        queue_alarm(box, f"ev{n}", 50_000 + n, chunk_bytes=4096)
        sent[f"ev{n}"] = (box.media_dir / f"ev{n}" / "clip.mp4").read_bytes()
    uplink = Uplink(settings(mosquitto.url, inflight=4), ROOT, DEVICE, box, SystemClock(), "1.2.3")
    uplink.start()
    try:
        assert uplink.wait_drained(NET_TIMEOUT)
        assert monitor.wait_for(lambda m: len(m.events) == 6 and len(m.media) == 3, NET_TIMEOUT)
        assert [e["seq"] for e in monitor.events] == list(range(1, 7))
        assert [(e["event_id"], e["phase"]) for e in monitor.events] == [
            (f"ev{n}", phase) for n in range(3) for phase in ("start", "end")]
        for event_id, data in sent.items():
            media = monitor.media[(event_id, "clip.mp4")]
            assert media.verified and media.size == len(data)
            assert media.path == tmp_path / "received" / DEVICE / event_id / "clip.mp4"
            assert media.path.read_bytes() == data
            assert not (box.media_dir / event_id / "clip.mp4").exists()  # sent and acknowledged: deleted
        assert monitor.statuses[DEVICE]["state"] == "online"
        assert monitor.statuses[DEVICE]["version"] == "1.2.3"
        assert box.depth() == 0 and box.size_bytes() == 0
    finally:
        uplink.stop()
    assert monitor.wait_for(lambda m: m.statuses[DEVICE]["state"] == "stopped", NET_TIMEOUT)
    monitor.stop()
    # retained: a receiver that connects later still learns the unit stopped cleanly
    late = watch(mosquitto.url, None)
    assert late.wait_for(lambda m: DEVICE in m.statuses, NET_TIMEOUT)
    assert late.statuses[DEVICE]["state"] == "stopped" and late.statuses[DEVICE]["device_id"] == DEVICE
    late.stop()


@pytest.mark.parametrize("signed", [False, True], ids=["no unit key", "unit key"])
def test_last_will_offline_when_agent_process_is_killed(mosquitto, tmp_path, signed):
    # with a unit key, the will is signed like every status: the station tells a real 'offline' from a spoofed one
    key_dir = tmp_path / "key"
    public = UnitKey.load_or_create(key_dir).public_b64() if signed else None
    monitor = Monitor(mosquitto.url, DEVICE, None, printer=lambda line: None,
                      unit_keys={DEVICE: public} if signed else None)
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, NET_TIMEOUT), "monitor never subscribed"
    script = textwrap.dedent(f"""
        import sys, threading
        from pathlib import Path
        from common.clock import SystemClock
        from agent.config import BrokerSettings
        from agent.evidence.keys import UnitKey
        from agent.storage.outbox import Outbox
        from agent.uplink.client import Uplink
        box = Outbox(Path(sys.argv[2]), 10**8, SystemClock())
        key = UnitKey.load_or_create(Path(sys.argv[3])) if sys.argv[4] == "signed" else None
        uplink = Uplink(BrokerSettings(url=sys.argv[1], reconnect_min_s=0.1, reconnect_max_s=0.5),
                        "{ROOT}", "{DEVICE}", box, SystemClock(), "0.0.1", key=key)
        uplink.start()
        print("started", flush=True)
        threading.Event().wait()  # run until killed
    """)
    child = subprocess.Popen([sys.executable, "-c", script, mosquitto.url, str(tmp_path / "child"), str(key_dir),
                              "signed" if signed else "unsigned"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert monitor.wait_for(lambda m: m.statuses.get(DEVICE, {}).get("state") == "online", NET_TIMEOUT), \
            child.stderr.read1().decode(errors="replace") if child.poll() is not None else "never online"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert monitor.wait_for(lambda m: m.statuses[DEVICE]["state"] == "offline", NET_TIMEOUT), monitor.rejected
        assert monitor.statuses[DEVICE]["device_id"] == DEVICE
        if signed:  # online and the will both checked against the unit's key; nothing rejected
            will = monitor.statuses[DEVICE]
            assert monitor.verified == 2 and monitor.forged == monitor.unverified == 0
            assert signature_verdict(will, public) == "verified"
            assert signature_verdict({**will, "state": "online"}, public) == "forged"
        else:
            assert "sig" not in monitor.statuses[DEVICE]
    finally:
        reap(child)
        monitor.stop()
    late = watch(mosquitto.url, None)  # the will is retained
    assert late.wait_for(lambda m: m.statuses.get(DEVICE, {}).get("state") == "offline", NET_TIMEOUT)
    late.stop()


def test_broker_down_at_start_then_everything_arrives_once_in_order(mosquitto_persistent, box, tmp_path):
    broker = mosquitto_persistent
    # The receiver holds a persistent session, so it misses nothing while the broker is down.
    monitor = watch(broker.url, tmp_path / "received", session="test-receiver")
    broker.stop()
    queue_alarm(box, "a1", 30_000, chunk_bytes=2048)
    for _ in range(5):
        box.put_message("heartbeat", payloads.heartbeat(uptime_s=box.next_seq()), "heartbeat")  # uptime marks order
    queue_alarm(box, "a2", 20_000, chunk_bytes=2048)
    uplink = Uplink(settings(broker.url), ROOT, DEVICE, box, SystemClock(), "1.0")
    uplink.start()  # must not raise: an unreachable broker is retried
    try:
        assert not uplink.wait_drained(0.5)
        assert not uplink.connected
        broker.start()
        assert uplink.wait_drained(NET_TIMEOUT), uplink.last_error
        assert monitor.wait_for(lambda m: len(m.events) == 4 and len(m.media) == 2 and len(m.heartbeats) == 5,
                                NET_TIMEOUT)
        assert [e["seq"] for e in monitor.events] == [1, 2, 8, 9]
        assert [h["uptime_s"] for h in monitor.heartbeats] == [3, 4, 5, 6, 7]
        assert monitor.duplicates == 0
        assert all(m.verified for m in monitor.media.values())
    finally:
        uplink.stop()
        monitor.stop()


def test_broker_restart_midway_everything_arrives(mosquitto_persistent, box, tmp_path):
    broker = mosquitto_persistent
    monitor = watch(broker.url, tmp_path / "received", session="test-receiver")
    for n in range(30):
        box.put_message("event", payloads.alarm_start(f"pre{n}", box.next_seq()), "event")
    queue_alarm(box, "big", 1_000_000, chunk_bytes=1024)  # ~1000 chunk rows, so the cut lands mid-stream
    for n in range(30):
        box.put_message("event", payloads.alarm_start(f"post{n}", box.next_seq()), "event")
    total = box.depth()
    uplink = Uplink(settings(broker.url, inflight=2), ROOT, DEVICE, box, SystemClock(), "1.0")
    uplink.start()
    try:
        assert monitor.wait_for(lambda m: len(m.events) >= 31, NET_TIMEOUT)  # media is streaming now
        broker.stop()
        left = box.depth()
        assert 0 < left < total, f"broker stopped too late to cut the stream (depth {left} of {total})"
        assert monitor.wait_for(lambda m: not m.subscribed, NET_TIMEOUT)
        broker.start()
        assert uplink.wait_drained(NET_TIMEOUT), uplink.last_error
        assert monitor.wait_for(lambda m: len(m.events) == 62 and len(m.media) == 1, NET_TIMEOUT)
        seqs = [e["seq"] for e in monitor.events]
        assert seqs == sorted(seqs) and len(set(seqs)) == 62
        assert monitor.media[("big", "clip.mp4")].verified
        assert monitor.media[("big", "clip.mp4")].size == 1_000_000
    finally:
        uplink.stop()
        monitor.stop()


def test_missing_tls_file_is_a_config_error_naming_it(box, tmp_path):
    from agent.config import TlsSettings
    from common.errors import ConfigError

    missing = tmp_path / "no-such-ca.pem"
    tls_settings = BrokerSettings(url="mqtts://127.0.0.1:8883", tls=TlsSettings(ca_file=missing))
    with pytest.raises(ConfigError, match=str(missing)):
        Uplink(tls_settings, ROOT, DEVICE, box, SystemClock(), "1.0")
