"""One identity per unit: mosquitto with mutual TLS, the client certificate's CN as username and client id, and an
ACL that confines each unit to `pids/<its CN>/`. The unit works there end to end, cannot read or write another
unit's commands, and a client claiming its client id, without its certificate or with another unit's, neither
gets in as the unit nor kicks it off.

Every wait is on a real condition (CONNACK, SUBACK, a message arriving); nothing sleeps."""

from __future__ import annotations

import queue
import shutil
import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import BrokerSettings, parse_config
from agent.evidence.keys import UnitKey
from agent.storage.outbox import Outbox
from agent.uplink import homeassistant, messages
from agent.uplink.client import Uplink
from agent.uplink.homeassistant import discovery_messages
from agent.uplink.publisher import Publisher
from common.clock import SystemClock
from station.monitor import Monitor, signature_verdict, tls_from
from tests import payloads
from tests.conftest import Broker, _require_mosquitto
from tests.footage import under_ci
from tests.test_tls import openssl

pytestmark = pytest.mark.broker

UNIT, OTHER, STATION, MONITOR = "pid-0042", "pid-0043", "station-command", "station-monitor"
HOME = "home-assistant"
NET_TIMEOUT = 20.0
# the broker side of "one identity per unit" (docs/mqtt.md, "Broker connection")


def documented_acl() -> str:
    """The pids.acl block of docs/mqtt.md, as an operator would copy it (the test runs what the docs say)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "mqtt.md").read_text(encoding="utf-8")
    block = next(part for part in text.split("```") if part.lstrip("\n").startswith("# pids.acl"))
    return block.strip("\n") + "\n"


ACL = documented_acl()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, the broker's certificate for 127.0.0.1, and one client certificate per identity (EC keys: fast)."""
    if shutil.which("openssl") is None:
        message = "openssl is not installed (Debian: openssl)"
        pytest.fail(message + "; CI=true requires the TLS test") if under_ci() else pytest.skip(message)
    folder = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test CA",
            cwd=folder)
    (folder / "server.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    (folder / "client.ext").write_text("extendedKeyUsage = clientAuth\n")
    for name, ext in (("server", "server.ext"), (UNIT, "client.ext"), (OTHER, "client.ext"), (STATION, "client.ext"),
                      (MONITOR, "client.ext"), (HOME, "client.ext")):
        subject = "/CN=127.0.0.1" if name == "server" else f"/CN={name}"
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=folder)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", ext, cwd=folder)
        (folder / f"{name}.key").chmod(0o600)
    return folder


@pytest.fixture
def broker(tmp_path, pki):
    _require_mosquitto()
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder)
    (folder / "acl").write_text(ACL)
    assert f"user {STATION}" in ACL and f"user {MONITOR}" in ACL and f"user {HOME}" in ACL
    lines = broker.config.read_text().replace("allow_anonymous true", "allow_anonymous false").splitlines()
    listener = next(i for i, line in enumerate(lines) if line.startswith("listener"))
    lines[listener + 1:listener + 1] = [
        f"cafile {pki / 'ca.pem'}", f"certfile {pki / 'server.pem'}", f"keyfile {pki / 'server.key'}",
        "require_certificate true", "use_identity_as_username true",
        "use_username_as_clientid true",  # the client id is the certificate's CN: no one can claim another's
        f"acl_file {folder / 'acl'}"]
    broker.config.write_text("\n".join(lines) + "\n")
    broker.start()
    yield broker
    broker.stop()


def tls_settings(port: int, pki: Path, name: str) -> BrokerSettings:
    return BrokerSettings(url=f"mqtts://127.0.0.1:{port}", reconnect_min_s=0.1, reconnect_max_s=0.5, keepalive_s=5,
                          tls={"ca_file": pki / "ca.pem", "cert_file": pki / f"{name}.pem",
                               "key_file": pki / f"{name}.key"})


class Client:
    """A plain paho client (station tool, snooper) whose every step waits for the broker's answer."""

    def __init__(self, port: int, pki: Path, name: str | None, client_id: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._acks: queue.Queue = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.client.tls_set(ca_certs=str(pki / "ca.pem"), certfile=str(pki / f"{name}.pem") if name else None,
                            keyfile=str(pki / f"{name}.key") if name else None, cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = lambda c, u, flags, reason, p: self._acks.put(("connack", reason))
        self.client.on_disconnect = lambda c, u, flags, reason, p: self._acks.put(("disconnected", reason))
        self.client.on_subscribe = lambda c, u, mid, codes, p: self._acks.put(("suback", codes))
        self.client.on_message = lambda c, u, message: self.messages.put((message.topic, bytes(message.payload)))
        self.port = port

    def connect(self) -> str:
        """'connected', or why the broker would not have it (TLS refused before any MQTT, or a refused CONNACK)."""
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=10)
        except (ssl.SSLError, OSError) as exc:
            return f"refused: {exc}"
        self.client.loop_start()
        kind, reason = self._acks.get(timeout=NET_TIMEOUT)
        if kind == "connack" and not reason.is_failure:
            return "connected"
        self.client.loop_stop()
        return f"refused: {kind} {reason}"

    def subscribe(self, topic: str) -> list:
        self.client.subscribe(topic, qos=1)
        kind, codes = self._acks.get(timeout=NET_TIMEOUT)
        assert kind == "suback", (kind, codes)
        return codes

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(NET_TIMEOUT)  # PUBACK: the broker has routed (or dropped) it
        assert info.is_published()

    def publish_refused(self, topic: str, payload: bytes) -> str:
        """Publish where the ACL forbids it: mosquitto drops the message and throws the client off (MQTT 3.1.1
        has no negative PUBACK); returns the disconnect's reason once the client saw it."""
        self.client.publish(topic, payload, qos=1)
        kind, reason = self._acks.get(timeout=NET_TIMEOUT)
        assert kind == "disconnected", (kind, reason)
        return str(reason)

    def next_message(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=NET_TIMEOUT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def unit_uplink(broker, pki: Path, tmp_path: Path, commands: queue.Queue) -> tuple[Uplink, Publisher, UnitKey]:
    key = UnitKey.load_or_create(tmp_path / "unit")
    outbox = Outbox(tmp_path / "unit", 64 * 1024 * 1024, SystemClock())
    publisher = Publisher(outbox, 4096, key=key)
    uplink = Uplink(tls_settings(broker.port, pki, UNIT), f"pids/{UNIT}", UNIT, outbox, SystemClock(), "1.0",
                    key=key)
    uplink.on_command = commands.put
    uplink.start()
    assert uplink.wait_listening(NET_TIMEOUT), uplink.last_error
    return uplink, publisher, key


def test_the_unit_works_alone_under_its_identity_and_cannot_be_impersonated(broker, pki, tmp_path):
    station = Client(broker.port, pki, STATION, "station-tool")
    assert station.connect() == "connected"
    commands: queue.Queue = queue.Queue()
    uplink, publisher, key = unit_uplink(broker, pki, tmp_path, commands)
    # the station's monitor, under its own certificate, verifying the unit's signatures
    monitor = Monitor(f"mqtts://127.0.0.1:{broker.port}", UNIT, None, printer=lambda line: None,
                      unit_keys={UNIT: key.public_b64()},
                      tls=tls_from(pki / "ca.pem", pki / f"{MONITOR}.pem", pki / f"{MONITOR}.key"))
    monitor.start()
    try:
        assert monitor.wait_for(lambda m: m.subscribed, NET_TIMEOUT), monitor.errors
        # the unit is in: its alarm reaches the station, signed; the station's command reaches the unit
        alarm = publisher.event(lambda seq: messages.AlarmStart(**payloads.envelope("e1", seq, UNIT), score=0.4,
                                                                boxes=[[1, 2, 3, 4]], image_size=[1280, 720],
                                                                zone="gate", confirmed_by=["video"]))
        uplink.notify()
        assert monitor.wait_for(lambda m: m.events, NET_TIMEOUT), monitor.errors
        assert monitor.events == [alarm] and signature_verdict(alarm, key.public_b64()) == "verified"
        assert monitor.forged == monitor.unverified == 0
        station.publish(f"pids/{UNIT}/cmd", b'{"probe": 1}')
        assert commands.get(timeout=NET_TIMEOUT).payload == b'{"probe": 1}'

        # an intruder with the unit's client id and no certificate: refused in the TLS handshake
        bare = Client(broker.port, pki, None, f"pid-agent-{UNIT}")
        assert bare.connect().startswith("refused")
        # another unit's genuine certificate, claiming this unit's client id: it connects, as itself only
        other = Client(broker.port, pki, OTHER, f"pid-agent-{UNIT}")
        assert other.connect() == "connected"
        assert other.publish_refused(f"pids/{UNIT}/cmd", b'{"forged": 1}')  # nor write into its commands
        station.publish(f"pids/{UNIT}/cmd", b'{"probe": 2}')
        # what reaches the unit next is the station's probe, on the connection it had all along: never kicked
        assert commands.get(timeout=NET_TIMEOUT).payload == b'{"probe": 2}'
        assert uplink.connected and uplink.connects == 1
        other.close()
    finally:
        monitor.stop()
        uplink.stop()
        station.close()


def test_a_unit_cannot_read_or_write_another_units_commands(broker, pki):
    station = Client(broker.port, pki, STATION, "station-tool")
    target = Client(broker.port, pki, OTHER, "whatever")  # the other unit, on its own commands
    snooper = Client(broker.port, pki, UNIT, "snooper")   # this unit's certificate, curious
    for client in (station, target, snooper):
        assert client.connect() == "connected"
    try:
        assert not any(code.is_failure for code in target.subscribe(f"pids/{OTHER}/cmd"))
        snooper.subscribe(f"pids/{OTHER}/cmd")  # mosquitto 2.0 grants it in the SUBACK, then delivers nothing
        assert not any(code.is_failure for code in snooper.subscribe(f"pids/{UNIT}/cmd"))
        station.publish(f"pids/{OTHER}/cmd", b"for the other unit")
        station.publish(f"pids/{UNIT}/cmd", b"marker")
        # each connection gets its messages in the broker's order: the marker comes after anything routed before
        assert snooper.next_message() == (f"pids/{UNIT}/cmd", b"marker")
        assert target.next_message() == (f"pids/{OTHER}/cmd", b"for the other unit")
        assert snooper.messages.empty()  # the other unit's command never reached the snooper
        # writing there: dropped, and the writer thrown off; the other unit's next message is the station's
        assert snooper.publish_refused(f"pids/{OTHER}/cmd", b"forged by the snooper")
        station.publish(f"pids/{OTHER}/cmd", b"second")
        assert target.next_message() == (f"pids/{OTHER}/cmd", b"second")
        assert target.messages.empty()
    finally:
        for client in (station, target, snooper):
            client.close()


def test_home_assistant_discovery_under_the_acl_keeps_the_unit_connected_and_its_own(broker, pki, tmp_path):
    # mosquitto throws off a client that publishes where the ACL forbids it: without its discovery line the unit
    # would be disconnected at every connect; with it, each unit writes only its own discovery topics
    home = Client(broker.port, pki, HOME, "home-assistant")
    assert home.connect() == "connected"
    home.subscribe("homeassistant/#")
    home.publish("homeassistant/status", b"online")  # Home Assistant's birth message, at each of its connects
    assert home.next_message() == ("homeassistant/status", b"online")  # allowed, and it is still connected
    uplink, _publisher, _key = unit_uplink(broker, pki, tmp_path, queue.Queue())
    other = Client(broker.port, pki, OTHER, "other-unit")
    try:
        config = parse_config({"device_id": UNIT, "homeassistant": {"enabled": True}})
        expected = discovery_messages(config.homeassistant, UNIT, config.site_ref, config.topic_root, [])
        homeassistant.announce(uplink, config)
        received = dict(home.next_message() for _ in expected)
        assert received == expected  # every entity's config, as Home Assistant reads them
        assert uplink.connected and uplink.connects == 1  # never thrown off for them
        assert other.connect() == "connected"
        assert other.publish_refused(next(iter(expected)), b"{}")  # another unit cannot rewrite this unit's entities
        assert home.publish_refused(f"pids/{UNIT}/cmd", b'{"cmd": "disarm"}')  # Home Assistant only reads
        assert uplink.connected and uplink.connects == 1
    finally:
        uplink.stop()
        for client in (home, other):
            client.close()
