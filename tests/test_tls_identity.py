"""One identity per unit: mosquitto with TLS client certificates as usernames (CN = device id) and an ACL pattern that
keeps each unit under its own pids/<id>/. The unit works there; it cannot read another unit's commands nor write
as another unit; a client with the unit's id but without its certificate is refused and cannot take its place."""

from __future__ import annotations

import shutil
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import BrokerSettings
from agent.storage.outbox import Outbox
from agent.uplink.client import Uplink, insecure_settings
from common.clock import SystemClock
from tests.conftest import Broker, _require_mosquitto
from tests.footage import under_ci
from tests.test_tls import openssl

pytestmark = pytest.mark.broker
UNIT, OTHER = "unit-1", "unit-2"
NET_TIMEOUT = 20.0


def client_cert(pki: Path, name: str) -> tuple[Path, Path]:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}", cwd=pki)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", cwd=pki)
    return pki / f"{name}.pem", pki / f"{name}.key"


@pytest.fixture
def identity_broker(tmp_path):
    _require_mosquitto()
    if shutil.which("openssl") is None:
        pytest.fail("openssl is required under CI") if under_ci() else pytest.skip("openssl is not installed")
    pki = tmp_path / "pki"
    pki.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=test fleet CA", cwd=pki)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1", cwd=pki)
    (pki / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=pki)
    certs = {name: client_cert(pki, name) for name in (UNIT, OTHER, "station")}
    # each unit only under its own root; the station (its own certificate) sees every unit
    (pki / "acl").write_text("user station\ntopic readwrite pids/#\n\npattern readwrite pids/%u/#\n")
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder)
    lines = broker.config.read_text().replace("allow_anonymous true", "allow_anonymous false").splitlines()
    listener = next(i for i, line in enumerate(lines) if line.startswith("listener"))
    lines[listener + 1:listener + 1] = [
        f"cafile {pki / 'ca.pem'}", f"certfile {pki / 'server.pem'}", f"keyfile {pki / 'server.key'}",
        "require_certificate true", "use_identity_as_username true", f"acl_file {pki / 'acl'}"]
    broker.config.write_text("\n".join(lines) + "\n")
    broker.start()
    try:
        yield broker, pki / "ca.pem", certs
    finally:
        broker.stop()


class Watcher:
    """A plain paho client with a given certificate (or none) that records what it receives and its SUBACKs."""

    def __init__(self, port: int, ca: Path, cert: tuple[Path, Path] | None, client_id: str, topics: list[str]):
        self.received: list[tuple[str, bytes]] = []
        self.granted: list = []
        self.changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.client.tls_set(ca_certs=str(ca), certfile=str(cert[0]) if cert else None,
                            keyfile=str(cert[1]) if cert else None, cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = lambda c, u, f, reason, p: [c.subscribe(topic, qos=1) for topic in topics]
        self.client.on_subscribe = self._subscribed
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.wait(lambda: len(self.granted) == len(topics)), f"{client_id} never subscribed"

    def _subscribed(self, client, userdata, mid, codes, properties):
        with self.changed:
            self.granted.extend(codes)
            self.changed.notify_all()

    def _message(self, client, userdata, message):
        with self.changed:
            self.received.append((message.topic, bytes(message.payload)))
            self.changed.notify_all()

    def wait(self, predicate, timeout: float = NET_TIMEOUT) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def topics(self) -> list[str]:
        with self.changed:
            return [topic for topic, _ in self.received]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(NET_TIMEOUT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def impostor_refused(port: int, ca: Path) -> bool:
    """Connect as the unit (its client id and username) without its certificate: True when the broker refuses
    (the TLS handshake fails, or the connection is closed before any CONNACK), False if it let the client in."""
    outcome, done = [], threading.Event()
    impostor = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pid-agent-{UNIT}", protocol=mqtt.MQTTv311)
    impostor.username_pw_set(UNIT)
    impostor.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    impostor.on_connect = lambda c, u, f, reason, p: (outcome.append(not reason.is_failure), done.set())
    impostor.on_disconnect = lambda c, u, f, reason, p: (outcome.append(False), done.set())
    try:
        impostor.connect("127.0.0.1", port)
    except (ssl.SSLError, OSError):
        return True  # TLS 1.2: the handshake itself fails
    impostor.loop_start()  # TLS 1.3: the broker checks the certificate after the handshake and closes
    try:
        assert done.wait(NET_TIMEOUT), "the broker neither accepted nor refused the impostor"
    finally:
        impostor.disconnect()
        impostor.loop_stop()
    return outcome[0] is False


def unit_settings(port: int, ca: Path, cert: tuple[Path, Path]) -> BrokerSettings:
    return BrokerSettings(url=f"mqtts://127.0.0.1:{port}", tls={"ca_file": ca, "cert_file": cert[0],
                                                                 "key_file": cert[1]},
                          reconnect_min_s=0.1, reconnect_max_s=0.5, keepalive_s=5)


def test_each_unit_only_under_its_own_root(identity_broker, tmp_path):
    broker, ca, certs = identity_broker
    station = Watcher(broker.port, ca, certs["station"], "station", ["pids/#"])
    outbox = Outbox(tmp_path / "data", 1 << 30, SystemClock())
    uplink = Uplink(unit_settings(broker.port, ca, certs[UNIT]), f"pids/{UNIT}", UNIT, outbox, SystemClock(), "1.0")
    commands, commanded = [], threading.Event()
    uplink.on_command = lambda received: (commands.append(received), commanded.set())
    outbox.put_message("event", {"event_id": "e1", "seq": outbox.next_seq(), "kind": "intrusion"}, kind="event")
    uplink.start()
    try:
        # the unit works under its own root: its event goes out and a command for it arrives
        assert uplink.wait_drained(NET_TIMEOUT), uplink.last_error
        assert station.wait(lambda: f"pids/{UNIT}/event" in station.topics())
        station.publish(f"pids/{UNIT}/cmd", b'{"cmd": "status"}')
        assert commanded.wait(NET_TIMEOUT) and commands[0].payload == b'{"cmd": "status"}'

        # the same certificate cannot read another unit's commands: mosquitto 2.0 grants the subscription
        # (MQTT 3.1.1) but the ACL keeps every message on it from being delivered
        spy = Watcher(broker.port, ca, certs[UNIT], "spy-with-unit-1-cert", [f"pids/{OTHER}/cmd",
                                                                               f"pids/{UNIT}/cmd"])
        station.publish(f"pids/{OTHER}/cmd", b'{"cmd": "disarm"}')
        station.publish(f"pids/{UNIT}/cmd", b'{"cmd": "status"}')  # the marker: sent after, delivered after
        assert spy.wait(lambda: f"pids/{UNIT}/cmd" in spy.topics())
        assert f"pids/{OTHER}/cmd" not in spy.topics()
        # ... nor write as the other unit: its event is dropped by the broker, the marker after it arrives
        spy.publish(f"pids/{OTHER}/event", b'{"event_id": "forged"}')
        spy.publish(f"pids/{UNIT}/event", b'{"event_id": "marker"}')
        assert station.wait(lambda: station.topics().count(f"pids/{UNIT}/event") == 2)
        assert f"pids/{OTHER}/event" not in station.topics()
        spy.close()

        # a client with the unit's client id and username but no certificate is refused at the handshake ...
        assert impostor_refused(broker.port, ca)
        # ... and so cannot take over the unit's session: the unit is still connected and still delivering
        outbox.put_message("event", {"event_id": "e2", "seq": outbox.next_seq(), "kind": "intrusion"}, kind="event")
        assert uplink.wait_drained(NET_TIMEOUT) and uplink.connected
        assert station.wait(lambda: station.topics().count(f"pids/{UNIT}/event") == 3)
    finally:
        uplink.stop()
        outbox.close()
        station.close()


def test_password_over_plain_mqtt_and_insecure_tls_are_named():
    assert insecure_settings(BrokerSettings(url="mqtts://h:8883", username="u", password="p")) == []
    plain = insecure_settings(BrokerSettings(url="mqtt://h:1883", username="u", password="p"))
    assert len(plain) == 1 and "password" in plain[0] and "mqtt://" in plain[0]
    insecure = insecure_settings(BrokerSettings(url="mqtts://h:8883", tls={"insecure": True}))
    assert len(insecure) == 1 and "tls.insecure" in insecure[0]
    assert insecure_settings(BrokerSettings(url="mqtt://h:1883")) == []  # no secret to leak


def test_insecure_settings_are_a_loud_warning_at_start_up(tmp_path, caplog):
    outbox = Outbox(tmp_path / "data", 1 << 20, SystemClock())
    try:
        with caplog.at_level("WARNING", logger="agent.uplink.client"):
            Uplink(BrokerSettings(url="mqtt://127.0.0.1:1883", username=UNIT, password="s3cret"), f"pids/{UNIT}",
                   UNIT, outbox, SystemClock(), "1.0")
    finally:
        outbox.close()
    warnings = [record for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "INSECURE" in warnings[0].getMessage()
    assert "s3cret" not in warnings[0].getMessage()  # the warning names the setting, never the secret
