"""Video-alarm email against a real SMTP server (aiosmtpd) on loopback, fed from a real Outbox."""

from __future__ import annotations

import datetime
import email
import email.policy
import hashlib
import ipaddress
import logging
import ssl
import threading

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.arc.email import EmailLink
from agent.arc.settings import ArcSettings, Dc09Settings, EmailSettings
from agent.storage.outbox import Outbox
from common.clock import ManualClock
from tests.net import free_port

IDENTITY = {"device_id": "pid-test-001", "site_ref": "SITE-7"}



class Inbox:
    """aiosmtpd handler: every accepted message, parsed."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self._changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._changed:
            self.messages.append(parsed)
            self._changed.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 10.0) -> list:
        with self._changed:
            self._changed.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "smtp.pem", tmp_path / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def smtp_server():
    started = []

    def start(port: int | None = None, tls: tuple | None = None) -> tuple[Inbox, int]:
        inbox, port = Inbox(), port or free_port()
        options = {}
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)

            def authenticate(server, session, envelope, mechanism, auth_data):
                ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
                    b"unit7", b"s3cret")
                return AuthResult(success=ok)

            options = dict(tls_context=context, require_starttls=True, authenticator=authenticate,
                           auth_required=True)
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        started.append(controller)
        return inbox, port

    yield start
    for controller in started:
        controller.stop()


def settings(port: int, **extra) -> ArcSettings:
    fields = dict(enabled=True, host="127.0.0.1", port=port, starttls=False, sender="unit@pid.example",
                  to=("alarms@arc.example",), backoff_min_s=5.0, backoff_max_s=20.0, timeout_s=5.0)
    fields.update(extra)
    return ArcSettings(email=EmailSettings(**fields), dc09=Dc09Settings(zones={"gate": 5}))


def queue_alarm(box: Outbox, event_id: str = "ev1", clip: bool = False):
    start = {**IDENTITY, "event_id": event_id, "kind": "intrusion", "phase": "start", "zone": "gate",
             "ts": "2026-12-01T20:00:00.000Z", "bearings_deg": [123.4], "sectors": ["NE"], "confirmed_by": ["video"]}
    box.put_message("event", start, "event")
    folder = box.media_dir / event_id
    folder.mkdir(parents=True, exist_ok=True)
    snapshot = folder / "snapshot.jpg"
    snapshot.write_bytes(bytes(range(256)) * 40)
    box.put_media(event_id, "snapshot.jpg", snapshot, "image/jpeg", chunk_bytes=4096)
    files = {"snapshot.jpg": hashlib.sha256(snapshot.read_bytes()).hexdigest()}
    if clip:
        path = folder / "clip.mp4"
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(50_000))
        box.put_media(event_id, "clip.mp4", path, "video/mp4", chunk_bytes=4096)
        files["clip.mp4"] = hashlib.sha256(path.read_bytes()).hexdigest()
    box.put_message("event", {**start, "phase": "end"}, "event")
    return files


def attachments(message) -> dict[str, str]:
    return {part.get_filename(): hashlib.sha256(part.get_content()).hexdigest()
            for part in message.iter_attachments()}


def drain(link: EmailLink, box: Outbox, clock: ManualClock, limit: int = 100) -> None:
    for _ in range(limit):
        if box.link_depth("email") == 0:
            return
        if not link.poll():
            clock.advance(1.0)
    raise AssertionError("email link did not drain")


def test_alarm_email_with_snapshot_then_clip_follow_up(tmp_path, smtp_server):
    inbox, port = smtp_server()
    clock = ManualClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = EmailLink(settings(port), box, clock, IDENTITY)
    files = queue_alarm(box, clip=True)
    drain(link, box, clock)
    alarm, follow_up = inbox.wait_for(2)
    assert alarm["Subject"] == "SITE-7-pid-test-001-gate" and alarm["To"] == "alarms@arc.example"
    assert attachments(alarm) == {"snapshot.jpg": files["snapshot.jpg"]}
    body = alarm.get_body(("plain",)).get_content()
    assert "zone gate (5)" in body and "bearing 123.4" in body and "sector NE" in body and "Event ev1" in body
    assert follow_up["Subject"] == "SITE-7-pid-test-001-gate (clip.mp4)"
    assert attachments(follow_up) == {"clip.mp4": files["clip.mp4"]}
    assert len(inbox.messages) == 2 and alarm["Message-ID"] != follow_up["Message-ID"]
    box.close()


def test_snapshot_is_freed_only_after_both_mqtt_and_email_have_it(tmp_path, smtp_server):
    inbox, port = smtp_server()
    clock = ManualClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = EmailLink(settings(port), box, clock, IDENTITY)
    queue_alarm(box)
    snapshot = box.media_dir / "ev1" / "snapshot.jpg"
    for row in box.pending(0, 100):  # the MQTT uplink delivered everything first
        box.ack(row.id)
    assert snapshot.exists()
    drain(link, box, clock)
    assert len(inbox.wait_for(1)) == 1 and not snapshot.exists() and box.size_bytes() == 0
    box.close()


def test_server_down_then_up_email_arrives_once(tmp_path, smtp_server):
    port = free_port()
    clock = ManualClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = EmailLink(settings(port), box, clock, IDENTITY)
    files = queue_alarm(box)
    assert link.poll() is False  # refused: backs off
    assert link.poll() is False  # still inside the 5 s backoff: no new attempt
    clock.advance(5.0)
    assert link.poll() is False  # second failure: 10 s now
    inbox, _ = smtp_server(port)
    clock.advance(9.0)
    assert link.poll() is False and box.link_depth("email") == 3
    clock.advance(1.0)
    drain(link, box, clock)
    got = inbox.wait_for(1)  # aiosmtpd stores a message before its 250, so what it has now is all it got
    assert len(got) == 1 and attachments(got[0]) == files and link.sent == 1
    assert box.link_depth("email") == 0  # start, snapshot and end all acknowledged
    clock.advance(20.0)  # past the longest backoff: a later poll has nothing to send
    assert link.poll() is False and link.sent == 1 and len(inbox.messages) == 1
    box.close()


def test_starttls_and_login(tmp_path, smtp_server):
    cert, key = self_signed(tmp_path)
    inbox, port = smtp_server(tls=(cert, key))
    clock = ManualClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = EmailLink(settings(port, starttls=True, ca_file=cert, username="unit7", password="s3cret"), box, clock,
                     IDENTITY)
    queue_alarm(box)
    drain(link, box, clock)
    assert len(inbox.wait_for(1)) == 1
    wrong = EmailLink(settings(port, starttls=True, ca_file=cert, username="unit7", password="nope"), box, clock,
                      IDENTITY)
    assert wrong.send_test() == "failed (see log)"
    box.close()


def test_alarm_waits_for_its_snapshot_but_not_forever(tmp_path, smtp_server):
    inbox, port = smtp_server()
    clock = ManualClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = EmailLink(settings(port), box, clock, IDENTITY)
    box.put_message("event", {**IDENTITY, "event_id": "ev9", "kind": "intrusion", "phase": "start"}, "event")
    assert link.poll() is False  # the snapshot is normally queued right after the start: wait for it
    clock.advance(29.0)
    assert link.poll() is False and inbox.messages == []
    clock.advance(1.0)  # it never came (storage fault): the alarm is mailed without it
    assert link.poll() is True
    got = inbox.wait_for(1)
    assert len(got) == 1 and list(got[0].iter_attachments()) == [] and box.link_depth("email") == 0
    box.close()


def test_long_outage_backoff_stays_capped_and_never_overflows(tmp_path, smtp_server, caplog):
    caplog.set_level(logging.ERROR, logger="agent.arc.email")  # 1100 failure lines are not the point here
    port = free_port()
    clock = ManualClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = EmailLink(settings(port), box, clock, IDENTITY)
    box.put_message("event", {**IDENTITY, "event_id": "ev1", "kind": "intrusion", "phase": "start"}, "event")
    clock.advance(30.0)  # no snapshot will come: mailed without one (a small email: 1100 of them to compose)
    for _ in range(1100):  # the old min_s * 2 ** (failures - 1) raised OverflowError at failure 1025
        assert link.poll() is False
        clock.advance(20.0)
    assert link.poll() is False  # failure 1101: the wait is still the 20 s cap
    clock.advance(19.9)
    inbox, _ = smtp_server(port)
    assert link.poll() is False and inbox.messages == []  # still waiting: no attempt
    clock.advance(0.1)
    assert link.poll() is True and len(inbox.wait_for(1)) == 1
    box.close()


def test_backoff_min_above_max_is_refused():
    with pytest.raises(ValueError, match="backoff_min_s must not exceed backoff_max_s"):
        EmailSettings(backoff_min_s=600.0, backoff_max_s=60.0)


def test_poll_that_keeps_raising_backs_off_and_logs_the_traceback_once(tmp_path, smtp_server, caplog):
    caplog.set_level(logging.ERROR, logger="agent.arc.polling")
    inbox, port = smtp_server()
    clock = ManualClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = EmailLink(settings(port), box, clock, IDENTITY)
    queue_alarm(box)
    snapshot = box.media_dir / "ev1" / "snapshot.jpg"
    kept = snapshot.read_bytes()
    snapshot.unlink()  # a storage fault under a queued row: composing the email raises
    waits = [link.step() for _ in range(8)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]  # not the 20 Hz idle poll
    assert len(caplog.records) == 8  # one line per backoff step ...
    assert caplog.records[0].exc_info is not None and all(r.exc_info is None for r in caplog.records[1:])
    assert "same error again (8 in a row)" in caplog.records[-1].getMessage()  # ... the traceback once
    snapshot.write_bytes(kept)
    assert link.step() == 0.0 and len(inbox.wait_for(1)) == 1 and link.error_count == 0
    queue_alarm(box, "ev2")
    (box.media_dir / "ev2" / "snapshot.jpg").unlink()
    caplog.clear()
    assert link.step() == 1.0  # a new run of failures starts again at the shortest wait
    assert caplog.records[0].exc_info is not None  # a fresh failure logs its traceback again
    box.close()
