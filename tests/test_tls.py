"""The uplink over TLS with a username and password, against a real mosquitto with a generated CA."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import BrokerSettings
from agent.storage.outbox import Outbox
from agent.uplink.client import Uplink
from common.clock import SystemClock
from tests.conftest import Broker, _require_mosquitto
from tests.footage import under_ci

pytestmark = pytest.mark.broker


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path):
    _require_mosquitto()
    if shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None:
        message = "openssl or mosquitto_passwd is not installed (Debian: openssl, mosquitto)"
        pytest.fail(message + "; CI=true requires the TLS test") if under_ci() else pytest.skip(message)
    pki = tmp_path / "pki"
    pki.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=test monitoring CA", cwd=pki)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1", cwd=pki)
    (pki / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=pki)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pki / "passwd"), "pid-0042", "s3cret"], check=True)
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder)
    lines = broker.config.read_text().replace("allow_anonymous true", "allow_anonymous false").splitlines()
    listener = next(i for i, line in enumerate(lines) if line.startswith("listener"))
    lines[listener + 1:listener + 1] = [f"cafile {pki / 'ca.pem'}", f"certfile {pki / 'server.pem'}",
                                        f"keyfile {pki / 'server.key'}", f"password_file {pki / 'passwd'}"]
    broker.config.write_text("\n".join(lines) + "\n")
    broker.start()
    try:
        yield broker, pki / "ca.pem"
    finally:
        broker.stop()


def subscriber(port: int, ca: Path) -> tuple[mqtt.Client, list, threading.Event]:
    received, subscribed = [], threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="station")
    client.username_pw_set("pid-0042", "s3cret")
    client.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    client.on_connect = lambda c, u, f, reason, p: c.subscribe("pids/#", qos=1)
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_message = lambda c, u, message: received.append((message.topic, json.loads(message.payload)))
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert subscribed.wait(10), "the test subscriber could not subscribe over TLS"
    return client, received, subscribed


def test_events_go_out_over_tls_with_credentials(tls_broker, tmp_path):
    broker, ca = tls_broker
    client, received, _ = subscriber(broker.port, ca)
    outbox = Outbox(tmp_path / "data", 1 << 30, SystemClock())
    settings = BrokerSettings(url=f"mqtts://127.0.0.1:{broker.port}", username="pid-0042", password="s3cret",
                              tls={"ca_file": ca})
    uplink = Uplink(settings, "pids/pid-0042", "pid-0042", outbox, SystemClock(), "1.0")
    outbox.put_message("event", {"event_id": "e1", "seq": outbox.next_seq(), "kind": "intrusion"}, kind="event")
    uplink.start()
    try:
        assert uplink.wait_drained(20), uplink.last_error
    finally:
        uplink.stop()
        outbox.close()
        client.loop_stop()
        client.disconnect()
    topics = [topic for topic, _ in received]
    assert "pids/pid-0042/event" in topics and "pids/pid-0042/status" in topics
    assert dict(received)["pids/pid-0042/event"]["event_id"] == "e1"


def test_wrong_password_is_reported_and_nothing_is_lost(tls_broker, tmp_path):
    broker, ca = tls_broker
    outbox = Outbox(tmp_path / "data", 1 << 30, SystemClock())
    settings = BrokerSettings(url=f"mqtts://127.0.0.1:{broker.port}", username="pid-0042", password="wrong",
                              tls={"ca_file": ca}, reconnect_min_s=0.5, reconnect_max_s=1.0)
    uplink = Uplink(settings, "pids/pid-0042", "pid-0042", outbox, SystemClock(), "1.0")
    outbox.put_message("event", {"event_id": "e1", "seq": outbox.next_seq(), "kind": "intrusion"}, kind="event")
    uplink.start()
    try:
        assert not uplink.wait_drained(3)
        assert not uplink.connected and uplink.last_error is not None
        assert "refused" in uplink.last_error or "Not authorized" in uplink.last_error
        assert outbox.depth() == 1  # the alarm waits on disk for a corrected password
    finally:
        uplink.stop()
        outbox.close()
