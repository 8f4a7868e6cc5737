"""SIA DC-09: the frame builder against fixed vectors and pysiaalarm's parser, and the link against a real
pysiaalarm receiver (the one Home Assistant's SIA integration uses) on loopback, fed from a real Outbox."""

from __future__ import annotations

import logging
import re
import socketserver
import threading
import time
from typing import Callable

import pytest
from Crypto.Cipher import AES
from pysiaalarm import SIAAccount, SIAClient
from pysiaalarm.event import SIAEvent

from agent.arc import codes, dc09
from agent.arc.link import MAX_OFFSET_S, Dc09Link
from agent.arc.reports import PathFailed, PathRestored, SignalRefused
from agent.arc.settings import ArcSettings, Dc09Settings
from agent.reactions import arc_message
from agent.storage.outbox import Outbox
from agent.uplink.messages import Identity, envelope
from common.clock import ManualClock
from tests.net import free_port

ACCOUNT = "AB1234"
KEY = b"0123456789ABCDEF"  # pysiaalarm takes the key's characters as its bytes
IDENTITY = {"device_id": "pid-test-001", "site_ref": "SITE-7"}


class ReceiverClock(ManualClock):
    """Monotonic time moves only when the test says (backoff, supervision); wall time is the machine's, which is
    what the real receiver checks timestamps against, plus an optional skew to provoke its time-window NAK."""

    def __init__(self, skew_s: float = 0.0) -> None:
        super().__init__()
        self.skew_s = skew_s

    def wall(self) -> float:
        return time.time() + self.skew_s



class Receiver:
    """A pysiaalarm TCP receiver that records every event it accepted (ACKed)."""

    def __init__(self, port: int, key: bytes | None) -> None:
        self.port, self.key = port, key
        self.events: list[SIAEvent] = []
        self._changed = threading.Condition()
        self._client: SIAClient | None = None

    def _record(self, event: SIAEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def start(self) -> "Receiver":
        account = SIAAccount(ACCOUNT, self.key.decode() if self.key else None)
        self._client = SIAClient("127.0.0.1", self.port, [account], self._record)
        self._client.start()
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._client = None

    def wait_for(self, count: int, timeout: float = 10.0) -> list[SIAEvent]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.events) >= count, timeout)
            return list(self.events)


class HostileReceiver:
    """A bare TCP peer on loopback that answers each connection's frame with what `reply(frame)` gives (None:
    stays silent until the link hangs up): for answers no well-behaved receiver sends. Counts connections."""

    def __init__(self, reply: Callable[[bytes], bytes | None]) -> None:
        self.connections = 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                frame = self.request.recv(4096)
                answer = reply(frame)
                if answer is None:
                    self.request.recv(4096)  # returns when the link gives up and closes
                else:
                    self.request.sendall(answer)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def seq_of(frame: bytes) -> str:
    return re.search(rb'"\*?[A-Z-]+"(\d{4})', frame).group(1).decode()


@pytest.fixture
def hostile():
    started = []

    def make(reply: Callable[[bytes], bytes | None]) -> HostileReceiver:
        started.append(HostileReceiver(reply))
        return started[-1]

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def receivers():
    started = []

    def make(key: bytes | None = KEY, running: bool = True) -> Receiver:
        receiver = Receiver(free_port(), key)
        started.append(receiver)
        return receiver.start() if running else receiver

    yield make
    for receiver in started:
        receiver.stop()


def arc(primary: Receiver, backup: Receiver | None = None, key: bytes | None = KEY, **extra) -> ArcSettings:
    fields = dict(enabled=True, primary=f"127.0.0.1:{primary.port}", account=ACCOUNT, receiver="12", line="3",
                  key_hex=key.hex() if key else "", zones={"gate": 5, "yard": 7}, unit_zone=99, timeout_s=2.0,
                  media_url="https://arc.example/e/{event_id}", supervision_s=90.0)
    if backup is not None:
        fields["backup"] = f"127.0.0.1:{backup.port}"
    fields.update(extra)
    return ArcSettings(dc09=Dc09Settings(**fields))


def alarm(event_id: str, phase: str = "start", zone: str | None = "gate") -> dict:
    return {**IDENTITY, "event_id": event_id, "kind": "intrusion", "phase": phase, "zone": zone}


def drain(link: Dc09Link, box: Outbox, clock: ManualClock, step_s: float = 1.0, limit: int = 200) -> None:
    """Poll until the link's queue is empty, moving the monotonic clock over backoff waits."""
    for _ in range(limit):
        if box.link_depth("dc09") == 0:
            return
        if not link.poll():
            clock.advance(step_s)
    raise AssertionError(f"link did not drain: {link.status()}")


# ---- frame builder -------------------------------------------------------------------------------------------

def test_crc_is_crc16_arc_and_agrees_with_pysiaalarm():
    assert dc09.crc16_arc(b"123456789") == 0xBB3D  # the CRC-16/ARC check value
    body = '"SIA-DCS"0001R0L0#1234[#1234|Nri1/BA003]_22:13:20,11-14-2023'
    assert f"{dc09.crc16_arc(body.encode()):04X}" == SIAEvent._crc_calc(body)


def test_plain_frame_matches_fixed_vector():
    who = dc09.Account("0", "0", "1234")
    frame = dc09.message(who, 1, "SIA-DCS", "Nri1/BA003", ("Vev1",), 1_700_000_000)
    assert frame == b'\nCCC70042"SIA-DCS"0001R0L0#1234[#1234|Nri1/BA003][Vev1]_22:13:20,11-14-2023\r'
    body = frame[9:-1]
    assert int(frame[5:9], 16) == len(body) == 0x42


def test_null_frame_and_sequence_wrap():
    who = dc09.Account("0", "0", "1234")
    body = '"NULL"9999R0L0#1234[]_22:13:20,11-14-2023'
    assert SIAEvent._crc_calc(body) == "3E03" and len(body) == 0x29
    assert dc09.message(who, 9999, "NULL", "", (), 1_700_000_000) == f"\n3E030029{body}\r".encode()
    assert [dc09.next_sequence(n) for n in (1, 9999, 10000, 19998, 19999)] == [1, 9999, 1, 9999, 1]
    with pytest.raises(ValueError):
        dc09.message(who, 0, "NULL", "", (), 0)


@pytest.mark.parametrize("key", [bytes(range(16)), bytes(range(24)), bytes(range(32))])
def test_encryption_pads_to_whole_blocks_with_random_pad(key):
    for length in range(0, 40):
        plain = "x" * length
        hex_text = dc09.encrypt(key, plain)
        assert len(hex_text) % 32 == 0  # whole 16-byte blocks
        clear = dc09.decrypt(key, hex_text)
        pad, rest = clear.split("|", 1)
        assert rest == plain and 1 <= len(pad) <= 16 and not set(pad) & set("|[]")
    assert dc09.encrypt(key, "same") != dc09.encrypt(key, "same")  # the random pad changes the first block
    assert dc09.encrypt(key, "abc", pad="P" * 12) == dc09.encrypt(key, "abc", pad="P" * 12)
    with pytest.raises(ValueError):
        dc09.encrypt(key, "abc", pad="P")


def test_encrypted_frame_fixed_vector():
    who = dc09.Account("0", "0", "1234", KEY)
    frame = dc09.message(who, 2, "SIA-DCS", "Nri1/BA003", (), 1_700_000_000, pad="p" * 10)
    assert frame.startswith(b"\n") and frame.endswith(b"\r") and b'"*SIA-DCS"0002R0L0#1234[' in frame
    assert int(frame[5:9], 16) == len(frame) - 10
    # decrypted by an independent AES (pycryptodome, pysiaalarm's), CBC with the DC-09 zero IV
    cipher = AES.new(KEY, AES.MODE_CBC, bytes(16))
    clear = cipher.decrypt(bytes.fromhex(frame[9:-1].decode().split("[", 1)[1])).decode()
    assert clear == "pppppppppp|#1234|Nri1/BA003]_22:13:20,11-14-2023"  # 48 bytes: 3 blocks


@pytest.mark.parametrize("key", [None, KEY])
@pytest.mark.parametrize("kind,data,code,zone", [("SIA-DCS", "Nri1/BA005", "BA", "005"),
                                                 ("ADM-CID", "1137 01 099", "TA", "099")])
def test_round_trip_through_pysiaalarm_parser(key, kind, data, code, zone):
    who = dc09.Account("12", "3", ACCOUNT, key)
    frame = dc09.message(who, 42, kind, data, ("Vhttps://arc.example/e/1",), time.time())
    accounts = {ACCOUNT: SIAAccount(ACCOUNT, key.decode() if key else None)}
    event = SIAEvent.from_line(frame.decode().strip(), accounts)
    assert event.valid_message and event.response.value == "ACK"
    assert (event.code, event.account, event.sequence, event.receiver, event.line) == (code, ACCOUNT, "0042",
                                                                                       "R12", "L3")
    assert (event.message if kind == "SIA-DCS" else event.ri) == zone
    assert event.encrypted == bool(key)
    answer = dc09.parse_answer(event.create_response(), key)
    assert answer.kind == "ACK" and answer.seq == 42


def test_answers_are_checked():
    ack = dc09.frame('"ACK"0007R0L0#1234[]')
    assert dc09.parse_answer(ack, None) == dc09.Answer("ACK", 7, None, '"ACK"0007R0L0#1234[]')
    assert dc09.parse_answer(ack.replace(b"0007", b"0008"), None) is None  # CRC no longer matches
    nak = dc09.parse_answer(dc09.frame('"NAK"0000R0L0A0[]_20:00:34,12-01-2026'), None)
    assert nak.kind == "NAK" and nak.seq is None and nak.receiver_time == 1796155234.0
    assert dc09.parse_answer(b'"NAK"', None).kind == "NAK"
    assert dc09.parse_answer(b"hello\r", None) is None


def test_answer_with_impossible_timestamp_has_no_receiver_time(caplog):
    caplog.set_level(logging.WARNING, logger="agent.arc.dc09")
    nak = dc09.parse_answer(dc09.frame('"NAK"0000R0L0A0[]_99:99:99,13-45-2026'), None)
    assert nak.kind == "NAK" and nak.receiver_time is None
    assert "'99:99:99,13-45-2026' is no valid time" in caplog.text


# ---- the link against a real receiver --------------------------------------------------------------------

@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "aes128"])
def test_alarm_restore_tamper_disarm_arrive_with_codes_zones_account(tmp_path, receivers, key):
    receiver = receivers(key)
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = Dc09Link(arc(receiver, key=key), box, clock, IDENTITY)
    box.put_message("event", alarm("ev1"), "event")
    box.put_message("event", {**IDENTITY, "kind": "heartbeat-ish"}, "event")  # not an ARC matter: not taken
    box.put_message("event", alarm("ev1", "end"), "event")
    box.put_message("event", {**IDENTITY, "kind": "tamper", "source": "video", "reason": "covered"}, "event")
    box.put_message("event", {**IDENTITY, "kind": "armed", "armed": False, "source": "command"}, "event")
    drain(link, box, clock)
    got = receiver.wait_for(4)
    assert [(e.code, e.message, e.ri, e.account, e.encrypted) for e in got] == [
        ("BA", "005", "1", ACCOUNT, bool(key)), ("BR", "005", "1", ACCOUNT, bool(key)),
        ("TA", "099", "1", ACCOUNT, bool(key)), ("OP", "000", "1", ACCOUNT, bool(key))]
    assert got[0].extended_data[0].identifier == "V"
    assert got[0].extended_data[0].value == "https://arc.example/e/ev1"
    assert (got[0].receiver, got[0].line) == ("R12", "L3")
    assert len({e.sequence for e in got}) == 4
    assert box.link_depth("dc09") == 0 and link.delivered == 4
    box.close()


def test_null_supervision_is_acknowledged_at_the_interval(tmp_path, receivers):
    receiver = receivers()
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = Dc09Link(arc(receiver, supervision_s=90.0), box, clock, IDENTITY)
    assert link.poll() is False  # nothing queued, supervision not yet due
    clock.advance(89.0)
    assert link.poll() is False
    clock.advance(1.0)
    assert link.poll() is True
    got = receiver.wait_for(1)
    assert got[0].message_type.value == "NULL" and got[0].encrypted and link.last_answer.kind == "ACK"
    assert link.poll() is False  # the next one is 90 s later
    box.close()


def test_receiver_down_60s_then_back_every_event_once_in_order(tmp_path, receivers):
    receiver = receivers(running=False)
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = Dc09Link(arc(receiver, retries_per_path=3, backoff_min_s=1.0, backoff_max_s=8.0), box, clock,
                    IDENTITY)
    zones = ["gate", "yard", None, "gate", "yard"]
    for n, zone in enumerate(zones):
        box.put_message("event", alarm(f"ev{n}", zone=zone), "event")
    attempts = 0
    while clock.monotonic() < 60.0:
        attempts += link.poll()
        clock.advance(0.5)
    assert 5 <= attempts <= 12  # backed off (1, 2, 4, 8, 8... s), not hammering the dead receiver
    assert link.status()["paths"] == {f"127.0.0.1:{receiver.port}": False} and box.link_depth("dc09") == 5
    receiver.start()
    drain(link, box, clock)
    got = receiver.wait_for(5)
    assert [e.message for e in got] == ["005", "007", "001", "005", "007"] and [e.code for e in got] == ["BA"] * 5
    # every row ACKed once and gone from the queue; nothing is due, so a later poll opens no connection
    assert box.link_depth("dc09") == 0 and link.delivered == 5 and link.status()["paths"] == {
        f"127.0.0.1:{receiver.port}": True}
    clock.advance(8.0)  # past the longest backoff, short of supervision
    assert link.poll() is False and link.delivered == 5
    assert [e.message for e in receiver.wait_for(5)] == ["005", "007", "001", "005", "007"]
    box.close()


def test_primary_down_backup_gets_it_and_primary_is_taken_back(tmp_path, receivers):
    primary = receivers(running=False)
    backup = receivers()
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    faults = []
    link = Dc09Link(arc(primary, backup, retries_per_path=2, supervision_s=30.0), box, clock, IDENTITY,
                    on_fault=faults.append)
    box.put_message("event", alarm("ev1"), "event")
    drain(link, box, clock)
    assert [e.code for e in backup.wait_for(1)] == ["BA"] and primary.events == []
    assert link.status()["active"] == f"127.0.0.1:{backup.port}"
    assert faults[0] == PathFailed(f"127.0.0.1:{primary.port}", "no valid answer")
    primary.start()
    clock.advance(30.0)
    assert link.poll() is True  # the primary probe (NULL)
    assert link.status()["active"] == f"127.0.0.1:{primary.port}"
    assert faults[-1] == PathRestored(f"127.0.0.1:{primary.port}")
    box.put_message("event", alarm("ev2", "end"), "event")
    drain(link, box, clock)
    assert [e.code for e in primary.wait_for(2)] == ["RP", "BR"]  # pysiaalarm reads a NULL as RP
    box.close()


def test_time_window_nak_corrects_offset_and_resend_is_accepted(tmp_path, receivers):
    receiver = receivers()
    clock = ReceiverClock(skew_s=-3600.0)  # the unit's clock is an hour slow: outside pysiaalarm's window
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = Dc09Link(arc(receiver), box, clock, IDENTITY)
    box.put_message("event", alarm("ev1"), "event")
    assert link.poll() is True
    got = receiver.wait_for(1)
    assert [e.code for e in got] == ["BA"] and box.link_depth("dc09") == 0
    assert link.offset_s == pytest.approx(3600.0, abs=2.0)
    assert abs(got[0].timestamp.timestamp() - time.time()) < 5
    box.close()


def test_duh_drops_the_signal_and_reports_a_fault(tmp_path, receivers):
    receiver = receivers()
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    faults = []
    link = Dc09Link(arc(receiver, codes={"intrusion_start": "QQ"}), box, clock, IDENTITY, on_fault=faults.append)
    box.put_message("event", alarm("ev1"), "event")
    box.put_message("event", alarm("ev1", "end"), "event")
    drain(link, box, clock)
    assert [e.code for e in receiver.wait_for(1)] == ["BR"]  # QQ is no SIA code: the receiver said DUH
    assert faults == [SignalRefused("intrusion_start", "QQ", "ev1")]
    box.close()


def test_runner_thread_sends_what_is_stored_and_stops(tmp_path, receivers):
    receiver = receivers()
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = Dc09Link(arc(receiver), box, clock, IDENTITY)
    link.start()
    try:
        box.put_message("event", {**IDENTITY, "kind": "power", "mains_ok": False}, "event")
        link.notify()
        assert [(e.code, e.message) for e in receiver.wait_for(1)] == [("AT", "099")]
    finally:
        link.stop()
    box.close()


def test_manual_test_report(tmp_path, receivers):
    receiver = receivers()
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    answer = Dc09Link(arc(receiver), box, clock, IDENTITY).manual_test()
    assert answer.kind == "ACK" and [e.code for e in receiver.wait_for(1)] == ["RX"]
    box.close()


@pytest.mark.parametrize("payload,expected", [
    ({"kind": "intrusion", "phase": "start", "zone": "yard"}, ("BA", 7)),
    ({"kind": "intrusion", "phase": "end", "zone": "nowhere"}, ("BR", 1)),
    ({"kind": "intrusion", "phase": "start", "walk_test": True}, None),
    ({"kind": "tamper", "source": "input", "zone": "gate", "open": True}, ("TA", 5)),
    ({"kind": "tamper", "source": "input", "zone": "gate", "open": False}, ("TR", 5)),
    ({"kind": "restore", "source": "video"}, ("TR", 99)),
    ({"kind": "fault", "source": "camera"}, ("BT", 99)),
    ({"kind": "restore", "source": "camera"}, ("BJ", 99)),
    ({"kind": "fault", "source": "storage"}, ("YX", 99)),
    ({"kind": "detector_fault", "zone": "yard", "active": True}, ("BT", 7)),
    ({"kind": "power", "mains_ok": True}, ("AR", 99)),
    ({"kind": "power", "battery_ok": False}, ("YT", 99)),
    ({"kind": "armed", "armed": True}, ("CL", 0)),
    ({"kind": "path", "path": "mqtt", "ok": False}, ("YC", 99)),
    ({"kind": "test"}, ("RP", 99)),
    ({"kind": "fault", "source": "arc", "reason": "receiver_duh"}, None),
    ({"kind": "scene_change"}, None),
])
def test_event_mapping(payload, expected):
    settings = Dc09Settings(zones={"gate": 5, "yard": 7}, unit_zone=99)
    signal = codes.signal_for(payload, settings)
    assert (signal.code, signal.zone) == expected if expected else signal is None


def test_contact_id_frames_arrive_through_the_link(tmp_path, receivers):
    receiver = receivers()
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = Dc09Link(arc(receiver, protocol="ADM-CID"), box, clock, IDENTITY)
    box.put_message("event", alarm("ev1", zone="yard"), "event")
    box.put_message("event", {**IDENTITY, "kind": "armed", "armed": True}, "event")
    drain(link, box, clock)
    got = receiver.wait_for(2)
    assert [(e.message_type.value, e.event_qualifier, e.event_type, e.ri, e.code) for e in got] == [
        ("ADM-CID", "1", "130", "007", "BA"), ("ADM-CID", "3", "401", "000", "CL")]
    box.close()


def test_a_disarmed_unit_sends_the_arc_only_its_arming_changes(tmp_path, receivers):
    receiver = receivers(None)
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = Dc09Link(arc(receiver, key=None), box, clock, IDENTITY)
    box.put_message("event", {**IDENTITY, "kind": "armed", "armed": False, "source": "command"}, "event")
    box.put_message("event", {**IDENTITY, "kind": "tamper", "source": "video", "reason": "covered"}, "event")
    box.put_message("event", {**IDENTITY, "kind": "power", "input": "mains", "mains_ok": False}, "event")
    box.put_message("event", {**IDENTITY, "kind": "armed", "armed": True, "source": "schedule"}, "event")
    box.put_message("event", alarm("ev9"), "event")
    drain(link, box, clock)
    assert [e.code for e in receiver.wait_for(3)] == ["OP", "CL", "BA"]
    box.close()


@pytest.mark.parametrize("report, expected", [
    (PathFailed("10.0.0.1:9000", "answer NAK"), {"kind": "fault", "source": "arc", "reason": "answer NAK",
                                                 "path": "10.0.0.1:9000", "signal": None}),
    (PathRestored("10.0.0.1:9000"), {"kind": "restore", "source": "arc", "path": "10.0.0.1:9000"}),
    (SignalRefused("intrusion_start", "QQ", "ev1"), {"kind": "fault", "source": "arc", "reason": "receiver_duh",
                                                     "signal": "intrusion_start", "code": "QQ",
                                                     "alarm_event_id": "ev1"}),
])
def test_link_reports_become_typed_mqtt_events(report, expected):
    env = envelope(Identity(**IDENTITY), 7, "e-1", 1_700_000_000.0, None)
    wire = arc_message(report, env).wire()
    assert {key: wire.get(key) for key in expected} == expected
    assert wire["seq"] == 7 and wire["device_id"] == IDENTITY["device_id"]


# ---- hostile or broken receivers ---------------------------------------------------------------------------

def test_nak_with_impossible_timestamp_is_a_path_failure_and_fails_over(tmp_path, receivers, hostile):
    primary = hostile(lambda frame: dc09.frame('"NAK"0000R0L0A0[]_99:99:99,13-45-2026'))
    backup = receivers(None)
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    faults = []
    link = Dc09Link(arc(primary, backup, key=None, retries_per_path=2), box, clock, IDENTITY, on_fault=faults.append)
    box.put_message("event", alarm("ev1"), "event")
    drain(link, box, clock)
    assert [e.code for e in backup.wait_for(1)] == ["BA"] and primary.connections == 2
    assert faults == [PathFailed(f"127.0.0.1:{primary.port}", "answer NAK")] and link.offset_s == 0.0
    box.close()


def test_oversized_answer_is_refused_with_a_reason(tmp_path, hostile, caplog):
    caplog.set_level(logging.WARNING, logger="agent.arc.link")
    # a well-formed ACK of the right sequence (CRC and length right), but 2 KiB long: no DC-09 answer is
    padded = hostile(lambda frame: dc09.frame(f'"ACK"{seq_of(frame)}R0L0#{ACCOUNT}[{"x" * 2000}]'))
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = Dc09Link(arc(padded, key=None), box, clock, IDENTITY)
    box.put_message("event", alarm("ev1"), "event")
    assert link.poll() is True
    assert link.delivered == 0 and box.link_depth("dc09") == 1 and link.paths[0].failures == 1
    assert link.last_reason == f"answer longer than {dc09.MAX_ANSWER_BYTES} bytes"
    assert f"no valid answer (answer longer than {dc09.MAX_ANSWER_BYTES} bytes) (failure 1)" in caplog.text
    box.close()


def test_nak_time_more_than_a_day_off_is_refused_and_the_offset_kept(tmp_path, hostile, caplog):
    caplog.set_level(logging.WARNING, logger="agent.arc.link")
    far = dc09.timestamp(time.time() + 400 * 86_400.0)  # the receiver's clock is a year ahead
    broken = hostile(lambda frame: dc09.frame(f'"NAK"0000R0L0A0[]{far}'))
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = Dc09Link(arc(broken, key=None), box, clock, IDENTITY)
    link.offset_s = 2.5  # learnt earlier from a sane NAK
    box.put_message("event", alarm("ev1"), "event")
    assert link.poll() is True
    assert link.offset_s == 2.5 and broken.connections == 1  # not learnt, and no resend with it
    assert box.link_depth("dc09") == 1 and link.paths[0].failures == 1
    assert f"refused (beyond {MAX_OFFSET_S:.0f} s), clock offset stays +2.5 s" in caplog.text
    box.close()


def test_no_valid_answer_says_why(tmp_path, receivers, hostile, caplog):
    caplog.set_level(logging.WARNING, logger="agent.arc.link")
    closed = receivers(running=False)  # nothing listens: refused
    silent = hostile(lambda frame: None)  # accepts, never answers: timed out
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    for receiver, why in ((closed, "connection refused"), (silent, "timed out")):
        link = Dc09Link(arc(receiver, timeout_s=0.3), box, clock, IDENTITY)
        assert link.manual_test() is None and link.last_reason == why
        assert f"127.0.0.1:{receiver.port}: no valid answer ({why}) (failure 1)" in caplog.text
    box.close()


def test_long_outage_backoff_stays_capped_and_never_overflows(tmp_path, receivers, caplog):
    caplog.set_level(logging.ERROR, logger="agent.arc.link")  # 1100 failure lines are not the point here
    receiver = receivers(running=False)
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    link = Dc09Link(arc(receiver, backoff_min_s=1.0, backoff_max_s=8.0), box, clock, IDENTITY)
    box.put_message("event", alarm("ev1"), "event")
    for _ in range(1100):  # the old min_s * 2 ** (failures - 1) raised OverflowError at failure 1025
        assert link.poll() is True and link.poll() is False  # one attempt, then waiting
        clock.advance(8.0)
    assert link.poll() is True and link.paths[0].failures == 1101
    clock.advance(7.9)  # the wait after failure 1101 is still the 8 s cap

    assert link.poll() is False
    clock.advance(0.1)
    receiver.start()
    assert link.poll() is True and link.delivered == 1 and box.link_depth("dc09") == 0
    box.close()
