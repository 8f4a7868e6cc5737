"""`pid-station deployment-report` from records the monitor saved: a real monitor on a real broker receives two
units' events, heartbeats and verdict answers (contract-valid payloads built with agent/uplink/messages.py), then the
report's CSV is parsed back and its charts opened and looked at."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone

import cv2
import paho.mqtt.publish as publish
import pytest

from agent.uplink import messages
from common.clock import iso_utc
from station.cli import main
from station.monitor import Monitor
from tests import payloads

pytestmark = pytest.mark.broker
DAY0 = datetime(2026, 11, 25, tzinfo=timezone.utc).timestamp()
BEAT_S = 600
GAP = (DAY0 + 86400 + 12 * 3600, DAY0 + 86400 + 15 * 3600)  # no heartbeat from 12:00 to 15:00 on day two


def at(hours: float) -> str:
    return iso_utc(DAY0 + hours * 3600)


def head(device: str, site: str, event_id: str, seq: int, hours: float) -> dict:
    return {"device_id": device, "site_ref": site, "event_id": event_id, "seq": seq, "ts": at(hours), "frame": 1}


def alarm(device: str, site: str, event_id: str, hours: float, zone: str, kind: str) -> dict:
    return messages.AlarmStart(**head(device, site, event_id, 1, hours), score=0.5, boxes=[[1, 2, 3, 4]],
                               image_size=[640, 480], zone=zone, confirmed_by=["video"],
                               object_class=kind).wire()


def verdict(event_id: str, request: str, said: str, police: bool, hours: float) -> list[tuple[str, dict]]:
    command = {"cmd": "verdict", "id": request, "event_id": event_id, "verdict": said, "police_dispatched": police}
    envelope = {"v": 1, "device_id": "unit-9", "cmd": command, "issued_at": 1, "expires_at": 31, "nonce": request,
                "key_id": "st", "sig": "c2ln"}
    answer = messages.CommandResult(device_id="unit-9", site_ref="S-17", ts=at(hours), id=request, ok=True,
                                    cmd="verdict", detail="verdict recorded").wire()
    return [("cmd", envelope), ("cmd/result", answer)]


def heartbeat(wall: float) -> dict:
    beat = payloads.heartbeat()
    return {**beat, "site_ref": "S-17", "ts": iso_utc(wall)}


def unit_9_traffic() -> list[tuple[str, dict]]:
    traffic = [("heartbeat", heartbeat(wall)) for wall in range(int(DAY0), int(DAY0 + 2 * 86400), BEAT_S)
               if not GAP[0] < wall < GAP[1]]
    traffic += [("event", alarm("unit-9", "S-17", "a1", 2.25, "yard", "person")),
                ("event", alarm("unit-9", "S-17", "a2", 2.5, "yard", "vehicle")),
                ("event", alarm("unit-9", "S-17", "a3", 47.1, "door", "person")),
                ("event", messages.VideoTamper(**head("unit-9", "S-17", "t1", 4, 34.0), reason="covered").wire()),
                ("event", messages.CameraFault(**head("unit-9", "S-17", "f1", 5, 35.0), reason="stalled",
                                               message="no frame for 10 s").wire())]
    traffic += verdict("a1", "v1", "genuine", True, 2.25 + 5 / 60) + verdict("a2", "v2", "false", False, 2.5 + 2 / 60)
    return traffic


@pytest.fixture
def records(mosquitto, tmp_path):
    out = tmp_path / "records"
    monitor = Monitor(mosquitto.url, None, out, printer=lambda line: None)
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, 20.0)
    traffic = [(f"pids/unit-9/{topic}", body) for topic, body in unit_9_traffic()]
    traffic.append(("pids/unit-7/event", alarm("unit-7", "S-30", "b1", 20.0, "gate", "unknown")))
    publish.multiple([{"topic": topic, "payload": json.dumps(body), "qos": 1} for topic, body in traffic],
                     hostname="127.0.0.1", port=mosquitto.port)
    beats = sum(topic.endswith("heartbeat") for topic, _ in traffic)
    assert monitor.wait_for(lambda m: len(m.heartbeats) == beats and len(m.events) == 6
                            and len(m.command_results) == 2, 30.0)
    monitor.stop()
    return out


def test_the_report_from_saved_records(records, tmp_path):
    config = tmp_path / "unit.toml"
    config.write_text('device_id = "unit-9"\nsite_ref = "S-17"\n[loan]\nclient_ref = "CR-88"\n'
                      'survey_url = "https://survey.example/pid"\n')
    out = tmp_path / "report"
    assert main(["deployment-report", str(records), "--out", str(out), "--config", str(config)]) == 0

    with (out / "report.csv").open(newline="") as source:
        rows = list(csv.DictReader(source))
    site = {(r["date"], int(r["hour"])): r for r in rows if r["site_ref"] == "S-17"}
    assert len(site) == 48  # every hour of the two days, zero rows too
    assert sum(int(r["alarms"]) for r in site.values()) == 3
    two = site[("2026-11-25", 2)]
    assert (two["alarms"], two["genuine"], two["false"], two["police_dispatched"]) == ("2", "1", "1", "1")
    assert site[("2026-11-26", 23)]["alarms"] == "1"
    assert site[("2026-11-26", 10)]["tamper"] == "1" and site[("2026-11-26", 11)]["faults"] == "1"
    other = [r for r in rows if r["site_ref"] == "S-30"]
    assert [(r["date"], r["hour"], r["alarms"]) for r in other] == [("2026-11-25", "20", "1")]

    report = json.loads((out / "report.json").read_text())
    assert report["loan"] == {"site_ref": "S-17", "client_ref": "CR-88", "survey_url": "https://survey.example/pid"}
    unit = next(u for u in report["units"] if u["device_id"] == "unit-9")
    assert unit["alarms_by_zone"] == {"yard": 2, "door": 1}
    assert unit["alarms_by_class"] == {"person": 2, "vehicle": 1}
    assert unit["verdicts"] == {"genuine": 1, "false": 1} and unit["police_dispatched"] == 1
    assert unit["verdict_delay_s"] == [300.0, 120.0]
    assert unit["tamper_faults"] == {"tamper:video": 1, "fault:camera": 1}
    day_two_seen = 86400 - BEAT_S  # from its first heartbeat to its last
    assert unit["availability_by_day"] == {"2026-11-25": 1.0,
                                           "2026-11-26": round((day_two_seen - 3 * 3600) / day_two_seen, 4)}

    text = (out / "summary.txt").read_text()
    assert "Site S-17 (unit unit-9)" in text and "3 alarms on 2 day(s)" in text and "CR-88" in text
    assert "median time from alarm to verdict 3.5 min" in text
    for name in ("alarms.png", "availability.png"):
        image = cv2.imread(str(out / name))
        assert (out / name).stat().st_size > 0 and image is not None and image.shape[:2] == (400, 900)
        assert image.std() > 10  # something drawn, not a blank canvas


def test_a_folder_without_records_is_a_config_error(tmp_path):
    assert main(["deployment-report", str(tmp_path)]) == 2


def test_a_torn_or_damaged_line_is_skipped_and_named_by_file_and_line(records, tmp_path):
    unit = records / "unit-9"
    events = unit / "events.jsonl"
    with events.open("ab") as stream:
        stream.write(b'{"kind": "intrusion", "phase": "sta')  # the station lost power while this was written
    torn_at = len(events.read_bytes().split(b"\n"))
    beats = (unit / "heartbeats.jsonl").read_bytes().split(b"\n")
    beats[4] = b"\xff\xfe" + beats[4][2:]  # a damaged block in the middle of the file
    beats.insert(6, b"[1, 2]")  # JSON, but not a record
    (unit / "heartbeats.jsonl").write_bytes(b"\n".join(beats))
    out = tmp_path / "report"
    assert main(["deployment-report", str(records), "--out", str(out)]) == 0

    report = json.loads((out / "report.json").read_text())
    nine = next(u for u in report["units"] if u["device_id"] == "unit-9")
    assert [line.split(":")[0] for line in nine["unreadable"]] == [
        f"events.jsonl line {torn_at} unreadable", "heartbeats.jsonl line 5 unreadable",
        "heartbeats.jsonl line 7 unreadable"]
    assert "not JSON" in nine["unreadable"][0] and "not valid UTF-8" in nine["unreadable"][1]
    assert "not a JSON object" in nine["unreadable"][2]
    assert nine["alarms"] == 3 and nine["tamper_faults"] == {"tamper:video": 1, "fault:camera": 1}  # the rest counts
    assert next(u for u in report["units"] if u["device_id"] == "unit-7")["unreadable"] == []
    text = (out / "summary.txt").read_text()
    assert f"events.jsonl line {torn_at} unreadable" in text and "heartbeats.jsonl line 7 unreadable" in text
