"""The engineers' receiver against a real broker, fed by a plain paho publisher (not our uplink)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys

import paho.mqtt.publish as publish
import pytest

from common.errors import ConfigError
from station.monitor import MediaLimits, Monitor
from tests import payloads
from tests.conftest import reap
from tests.net import free_port

pytestmark = pytest.mark.broker
NET_TIMEOUT = 20.0
ROOT = "pids/unit-9"


def media_messages(event_id: str, name: str, data: bytes, chunk: int, sha: str | None = None) -> tuple[dict, list]:
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    manifest = {"event_id": event_id, "name": name, "content_type": "image/jpeg", "total_bytes": len(data),
                "chunk_bytes": chunk, "chunks": len(chunks), "sha256": sha or hashlib.sha256(data).hexdigest()}
    base = f"{ROOT}/media/{event_id}/{name}"
    return ({"topic": f"{base}/manifest", "payload": json.dumps(manifest), "qos": 1},
            [{"topic": f"{base}/{i}", "payload": c, "qos": 1} for i, c in enumerate(chunks)])


def send(broker, messages: list[dict]) -> None:
    publish.multiple(messages, hostname="127.0.0.1", port=broker.port)


def started(url: str, device: str | None, out_dir=None, lines=None) -> Monitor:
    monitor = Monitor(url, device, out_dir, printer=(lines.append if lines is not None else lambda line: None))
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, NET_TIMEOUT)
    return monitor


def test_chunks_before_manifest_reversed_and_duplicated(mosquitto, tmp_path):
    monitor = started(mosquitto.url, "unit-9", tmp_path / "out")
    data = os.urandom(10_000)
    manifest, chunks = media_messages("e1", "snapshot.jpg", data, 4096)
    send(mosquitto, [chunks[2], chunks[1], manifest, chunks[1], chunks[0], manifest, chunks[0]])
    assert monitor.wait_for(lambda m: ("e1", "snapshot.jpg") in m.media, NET_TIMEOUT)
    got = monitor.media[("e1", "snapshot.jpg")]
    assert got.verified and got.size == 10_000 and got.sha256 == hashlib.sha256(data).hexdigest()
    assert got.path == tmp_path / "out" / "unit-9" / "e1" / "snapshot.jpg"
    assert got.path.read_bytes() == data
    monitor.stop()


def test_corrupt_media_is_flagged_not_verified(mosquitto):
    lines: list[str] = []
    monitor = started(mosquitto.url, None, lines=lines)
    data = os.urandom(5000)
    manifest, chunks = media_messages("e2", "clip.mp4", data, 2048, sha="0" * 64)
    send(mosquitto, [manifest, *chunks])
    assert monitor.wait_for(lambda m: ("e2", "clip.mp4") in m.media, NET_TIMEOUT)
    got = monitor.media[("e2", "clip.mp4")]
    assert not got.verified and got.data == data and got.path is None
    assert any("MISMATCH" in line and "e2/clip.mp4" in line for line in lines)
    monitor.stop()


def test_events_deduplicated_and_statuses_per_device(mosquitto):
    lines: list[str] = []
    monitor = started(mosquitto.url, None, lines=lines)
    start = payloads.alarm_start("e3", seq=1)
    end = payloads.alarm_end("e3", seq=2, clip={"name": "clip.mp4", "bytes": 10, "sha256": payloads.SHA})
    beat = payloads.heartbeat(uptime_s=5)
    send(mosquitto, [{"topic": f"{ROOT}/event", "payload": json.dumps(p), "qos": 1} for p in (start, start, end)]
         + [{"topic": "pids/other/status", "payload": json.dumps(payloads.status("online", "other")),
             "qos": 1, "retain": True},
            {"topic": f"{ROOT}/heartbeat", "payload": json.dumps(beat), "qos": 1},
            {"topic": f"{ROOT}/event", "payload": b"not json", "qos": 1}])
    assert monitor.wait_for(lambda m: len(m.events) == 2 and m.heartbeats and m.statuses and m.errors,
                            NET_TIMEOUT)
    assert [e["phase"] for e in monitor.events] == ["start", "end"] and monitor.duplicates == 1
    assert monitor.statuses["other"]["state"] == "online"
    assert monitor.heartbeats == [beat]
    assert any("bad message" in err and f"{ROOT}/event" in err for err in monitor.errors)
    assert any("EVENT end e3" in line and "clip=clip.mp4(10 B)" in line for line in lines)
    assert any("HEARTBEAT" in line and "uptime_s=5" in line for line in lines)
    monitor.stop()


def test_device_filter_ignores_other_units(mosquitto):
    monitor = started(mosquitto.url, "unit-9")
    send(mosquitto, [{"topic": "pids/other/event", "payload": json.dumps(payloads.alarm_start("x")), "qos": 1},
                     {"topic": f"{ROOT}/event", "payload": json.dumps(payloads.alarm_start("y")), "qos": 1}])
    assert monitor.wait_for(lambda m: m.events, NET_TIMEOUT)
    assert [e["event_id"] for e in monitor.events] == ["y"]
    monitor.stop()


def test_bad_url_is_a_config_error():
    with pytest.raises(ConfigError, match="http://nowhere"):
        Monitor("http://nowhere", None, None)


def test_run_monitor_prints_verified_and_exits_on_ctrl_c(mosquitto, tmp_path):
    script = ("import sys; from pathlib import Path; from station.monitor import run_monitor; "
              "sys.exit(run_monitor(sys.argv[1], None, Path(sys.argv[2])))")
    child = subprocess.Popen([sys.executable, "-u", "-c", script, mosquitto.url, str(tmp_path / "out")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = child.stdout.readline()  # said before any answer from the broker
        assert first.startswith(f"connecting to {mosquitto.url} to watch pids/+/#") and "persistent session" in first
        assert "watching pids/+/#" in child.stdout.readline()
        # The subscription follows the connect line; a retained status proves it is active.
        send(mosquitto, [{"topic": f"{ROOT}/status", "payload": json.dumps(payloads.status("online")), "qos": 1,
                          "retain": True}])
        assert "STATUS online" in child.stdout.readline()
        data = os.urandom(3000)
        manifest, chunks = media_messages("e4", "snapshot.jpg", data, 1024)
        send(mosquitto, [manifest, *chunks])
        line = child.stdout.readline()
        assert "MEDIA e4/snapshot.jpg 3000 B" in line and "VERIFIED" in line
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=NET_TIMEOUT) == 0
    finally:
        reap(child)
    assert (tmp_path / "out" / "unit-9" / "e4" / "snapshot.jpg").read_bytes() == data


def test_names_from_the_network_never_escape_out(mosquitto, tmp_path):
    out = tmp_path / "sub" / "out"
    monitor = started(mosquitto.url, None, out)
    data = os.urandom(100)
    sha = hashlib.sha256(data).hexdigest()
    base = "pids/../media/../ESCAPED.txt"  # device '..', event id '..': joined as given, this lands beside out
    manifest = {"event_id": "../ESCAPED.txt", "name": "ESCAPED.txt", "content_type": "text/plain",
                "total_bytes": len(data), "chunk_bytes": 100, "chunks": 1, "sha256": sha}
    send(mosquitto, [{"topic": f"{base}/manifest", "payload": json.dumps(manifest), "qos": 1},
                     {"topic": f"{base}/0", "payload": data, "qos": 1}])
    assert monitor.wait_for(lambda m: m.media, NET_TIMEOUT)
    monitor.stop()
    written = [path for path in tmp_path.rglob("*") if path.is_file() and "broker" not in path.parts]
    assert written == [out / "_" / "_" / "ESCAPED.txt"] and written[0].read_bytes() == data


def test_run_monitor_uses_a_persistent_session_by_default():
    from station.monitor import default_session

    assert default_session("unit-9") == default_session("unit-9") and "unit-9" in default_session("unit-9")



def test_an_unreachable_broker_is_said_at_once_and_each_retry_shows_its_reason():
    lines: list[str] = []
    url = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there: every attempt is refused
    monitor = Monitor(url, None, None, printer=lines.append)
    monitor.start()
    try:
        assert lines[0].startswith(f"connecting to {url} to watch pids/+/#")  # before any attempt returned
        assert monitor.wait_for(lambda m: len(m.errors) >= 2, NET_TIMEOUT)  # the first try and a retry
    finally:
        monitor.stop()
    retries = [line for line in lines[1:] if line.startswith("WARNING")]
    assert len(retries) >= 2 and all(f"cannot reach broker {url}: Connection refused; retrying" in line
                                     for line in retries)


def test_json_lines_and_the_records_kept_for_reports(mosquitto, tmp_path):
    """`pid-station monitor --json --out DIR` as a script would run it: every line parsed, every record read back."""
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-u", "-m", "station.cli", "monitor", "--broker", mosquitto.url,
                              "--json", "--out", str(out), "--clean-session"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        read = lambda: json.loads(child.stdout.readline())  # noqa: E731 - each line is one JSON object
        assert read() == {"kind": "connecting", "device": None, "topic": None, "broker": mosquitto.url,
                          "watching": "pids/+/#", "session": None}
        assert read()["kind"] == "connected"
        send(mosquitto, [{"topic": f"{ROOT}/status", "payload": json.dumps(payloads.status("online")), "qos": 1,
                          "retain": True}])
        assert read()["kind"] == "status"  # retained: proves the subscription is active
        start, end = payloads.alarm_start("e5", seq=1), payloads.alarm_end("e5", seq=2)
        beat = payloads.heartbeat(uptime_s=9)
        verdict = {"cmd": "verdict", "id": "v7", "event_id": "e5", "verdict": "false", "police_dispatched": False}
        envelope = {"v": 1, "device_id": "unit-9", "cmd": verdict, "issued_at": 1, "expires_at": 31, "nonce": "n",
                    "key_id": "st", "sig": "c2ln"}
        result = {"device_id": "unit-9", "site_ref": "S", "ts": "2026-11-25T08:50:00.000Z", "id": "v7", "ok": True,
                  "cmd": "verdict", "detail": "verdict recorded"}
        data = os.urandom(1500)
        manifest, chunks = media_messages("e5", "snapshot.jpg", data, 1024)
        send(mosquitto, [{"topic": f"{ROOT}/event", "payload": json.dumps(p), "qos": 1} for p in (start, start, end)]
             + [{"topic": f"{ROOT}/heartbeat", "payload": json.dumps(beat), "qos": 1},
                {"topic": f"{ROOT}/cmd", "payload": json.dumps(envelope), "qos": 1},
                {"topic": f"{ROOT}/cmd/result", "payload": json.dumps(result), "qos": 1}, manifest, *chunks])
        got = [read() for _ in range(5)]
        assert [(g["kind"], g["device"], g["topic"]) for g in got] == [
            ("event", "unit-9", f"{ROOT}/event"), ("event", "unit-9", f"{ROOT}/event"),
            ("heartbeat", "unit-9", f"{ROOT}/heartbeat"), ("result", "unit-9", f"{ROOT}/cmd/result"),
            ("media", "unit-9", f"{ROOT}/media/e5/snapshot.jpg/1")]
        assert [g["payload"] for g in got[:4]] == [start, end, beat, result]  # the duplicate start is not repeated
        assert got[4]["media"] == {"event_id": "e5", "name": "snapshot.jpg", "bytes": 1500, "verified": True,
                                   "sha256": hashlib.sha256(data).hexdigest(),
                                   "path": str(out / "unit-9" / "e5" / "snapshot.jpg")}
        child.send_signal(signal.SIGINT)
        assert read() == {"kind": "stopping", "device": None, "topic": None}
        assert child.wait(timeout=NET_TIMEOUT) == 0
    finally:
        reap(child)
    records = lambda name: [json.loads(line) for line in (out / "unit-9" / name).read_text().splitlines()]  # noqa: E731
    assert records("events.jsonl") == [start, end]
    assert records("heartbeats.jsonl") == [beat]
    assert records("status.jsonl") == [payloads.status("online")]
    assert records("results.jsonl") == [{"result": result, "command": verdict}]


def test_a_hostile_publisher_cannot_make_the_monitor_hold_what_no_manifest_allows(mosquitto):
    """Through the real broker: parts outside the manifest, an oversized chunk and a flood of open files are
    refused with a printed, counted reason; the genuine file beside them still verifies."""
    lines: list[str] = []
    monitor = Monitor(mosquitto.url, "unit-9", None, printer=lines.append,
                      media_limits=MediaLimits(max_open=2, early_chunks=1))
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, NET_TIMEOUT)
    data = os.urandom(3000)
    manifest, chunks = media_messages("e7", "clip.mp4", data, 1024)
    base = f"{ROOT}/media/e7/clip.mp4"
    flood = [{"topic": f"{ROOT}/media/f{n}/clip.mp4/0", "payload": b"f" * 10, "qos": 1} for n in range(3)]
    send(mosquitto, [manifest, {"topic": f"{base}/4294967296", "payload": b"x", "qos": 1},
                     {"topic": f"{base}/1", "payload": os.urandom(1025), "qos": 1}, *chunks, *flood])
    assert monitor.wait_for(lambda m: ("e7", "clip.mp4") in m.media and m.assembler.refused["dropped"] == 1,
                            NET_TIMEOUT)
    monitor.stop()
    assert monitor.media[("e7", "clip.mp4")].verified
    assert monitor.assembler.refused == {"part": 1, "chunk size": 1, "dropped": 1} and monitor.assembler.open == 2
    assert any("WARNING [unit-9] media e7/clip.mp4: chunk 1 has 1025 B, the manifest allows 1024 B" in line
               for line in lines)
    assert any("media f0/clip.mp4: dropped incomplete" in line for line in lines)
