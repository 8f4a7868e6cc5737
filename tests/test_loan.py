"""The 30-day loan over a simulated 35 days (injected clock, a live camera delivering four frames a day): the start
at first arming, warnings at 7/3/1 days, the end both ways, an extension only by signed command, all audited."""

from __future__ import annotations

import json

import numpy as np
import pytest
from nacl.signing import SigningKey

from agent.commands import Received
from agent.config import parse_config
from agent.loan import DAY_S, LoanBook, LoanSettings
from agent.pipeline import Agent
from agent.security import public_key_text, sign
from common.clock import ManualClock
from common.errors import StorageError
from drivers.camera.base import Camera, Frame, make_luma

DEVICE = "pid-loan"
START = 1_800_000_000.0
FRAMES_PER_DAY = 4
KEY = SigningKey(b"\x02" * 32)


class DaysCamera(Camera):
    """A live camera on a quiet site; the clock moves six hours between frames, for `days` days."""

    live = True
    fps = 10.0

    def __init__(self, clock: ManualClock, days: int) -> None:
        self.clock, self.count = clock, days * FRAMES_PER_DAY
        self.image = np.random.default_rng(3).integers(60, 200, (180, 320, 3), dtype=np.uint8)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def frames(self):
        for index in range(self.count):
            self.clock.advance(DAY_S / FRAMES_PER_DAY)
            yield Frame(ts=self.clock.monotonic(), index=index, image=self.image, luma=make_luma(self.image, 320))


START_LOAN = {"cmd": "start_loan", "reference": "LOAN-1"}


def run(tmp_path, at_end: str, commands_at: dict[int, list[dict | bytes]] | None = None, days: int = 35):
    commands_at = {0: [START_LOAN], **(commands_at or {})}
    clock = ManualClock(wall_start=START)
    config = parse_config({
        "device_id": DEVICE, "data_dir": str(tmp_path / "data"), "loan": {"at_end": at_end},
        "commands": {"station_keys": [{"id": "st", "public_key": public_key_text(KEY)}]},
        "camera_watchdog": {"stall_after_s": 3600}})
    camera = DaysCamera(clock, days)
    agent = Agent(config, camera, clock, upload=False)

    def on_frame(frame):
        for command in commands_at.get(frame.index, []):
            # applied at the next frame, six hours on: signed as the station would sign it at that moment
            applied_at = clock.wall() + DAY_S / FRAMES_PER_DAY
            payload = command if isinstance(command, bytes) else json.dumps(
                sign(command, DEVICE, KEY, "st", applied_at, 30)).encode()
            agent.submit_command(Received(payload))
        if frame.index >= camera.count - 1:
            agent.stop()

    agent.on_frame = on_frame
    agent.run()
    return [e for e in agent.summary.events_published], tmp_path / "data"


def day_of(event) -> float:
    from datetime import datetime, timezone

    moment = datetime.strptime(event["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    return (moment - START) / DAY_S


def test_warnings_then_the_end_stops_alarms_and_arming_is_refused(tmp_path):
    events, data_dir = run(tmp_path, "stop", {125: [{"cmd": "arm"}]})
    loan = [e for e in events if e["kind"] == "loan"]
    assert [e["state"] for e in loan] == ["started", "warning", "warning", "warning", "ended"]
    started = day_of(loan[0])
    assert [round(e["days_remaining"]) for e in loan[1:4]] == [7, 3, 1]
    assert round(day_of(loan[-1]) - started, 2) == 30.0
    disarm = [e for e in events if e["kind"] == "armed"]
    assert disarm and disarm[-1]["armed"] is False and disarm[-1]["source"] == "loan"
    book = LoanBook(LoanSettings(at_end="stop"), data_dir)
    assert book.alarms_stopped(START + 40 * DAY_S)
    audited = [json.loads(line) for line in (data_dir / "audit.jsonl").read_text().splitlines()]
    assert [e["data"]["state"] for e in audited if e["kind"] == "loan"] == [e["state"] for e in loan]
    started, refused = [e["data"] for e in audited if e["kind"] == "command_result"]
    assert started["ok"] and started["detail"].startswith("loan started (LOAN-1)")
    assert refused["ok"] is False and "loan has ended" in refused["reason"]


def test_a_signed_extension_moves_the_end_and_an_unsigned_one_is_refused(tmp_path):
    extension = {"cmd": "extend_loan", "days": 10, "reference": "INV-2041"}
    events, data_dir = run(tmp_path, "keep", {80: [extension, json.dumps(extension).encode()]})
    loan = [e for e in events if e["kind"] == "loan"]
    assert "ended" not in [e["state"] for e in loan]
    extended = next(e for e in loan if e["state"] == "extended")
    assert extended["reference"] == "INV-2041" and round(extended["days_remaining"] + day_of(extended)
                                                         - day_of(loan[0])) == 40
    book = LoanBook(LoanSettings(), data_dir)
    assert [(x.days, x.reference) for x in book.extensions] == [(10, "INV-2041")]
    audited = [json.loads(line) for line in (data_dir / "audit.jsonl").read_text().splitlines()]
    _, signed_result, unsigned_result = [e["data"] for e in audited if e["kind"] == "command_result"]
    assert signed_result["ok"] and signed_result["detail"].startswith("loan extended (INV-2041); ends ")
    assert unsigned_result["ok"] is False


def test_keep_flags_every_event_after_the_end_out_of_term(tmp_path):
    events, _ = run(tmp_path, "keep", {130: [{"cmd": "silence"}]}, days=34)
    ended = next(e for e in events if e["kind"] == "loan" and e["state"] == "ended")
    assert ended.get("out_of_term") is True
    assert all("out_of_term" not in e for e in events if e["seq"] < ended["seq"])


@pytest.mark.parametrize("paid_until, days, expected_end_day", [("2027-02-14", 0, None), (None, 5, 35.0)])
def test_the_end_is_the_later_of_term_plus_days_and_paid_until(tmp_path, paid_until, days, expected_end_day):
    book = LoanBook(LoanSettings(), tmp_path)
    book.start(START)
    notice = book.extend(days, paid_until, "R1", START + DAY_S)
    if expected_end_day is None:
        from datetime import datetime, timezone

        assert notice.end_wall == datetime(2027, 2, 15, tzinfo=timezone.utc).timestamp()
    else:
        assert notice.end_wall == START + expected_end_day * DAY_S
    assert LoanBook(LoanSettings(), tmp_path).end_wall() == notice.end_wall  # kept across restarts


def test_the_loan_report_from_the_audit_log_matches_what_was_raised(tmp_path):
    import subprocess

    from station.cli import main

    extension = {"cmd": "extend_loan", "days": 10, "reference": "INV-7"}
    events, data_dir = run(tmp_path, "keep", {80: [extension]})
    out = tmp_path / "report"
    assert main(["loan-report", str(data_dir / "audit.jsonl"), "--out", str(out), "--data-dir", str(data_dir)]) == 0
    report = json.loads((out / "loan-report.json").read_text())
    loan = [e for e in events if e["kind"] == "loan"]
    assert report["device_id"] == DEVICE and report["started"] == loan[0]["ts"]
    assert [(x["days"], x["reference"]) for x in report["extensions"]] == [(10, "INV-7")]
    assert report["alarms"] == len([e for e in events if e["kind"] == "intrusion" and e["phase"] == "start"])
    assert 34.0 <= report["days_in_service"] <= 35.0 and report["days_armed"] == report["days_in_service"]
    assert report["signature"] and report["signed_by"]
    text = subprocess.run(["pdftotext", str(out / "loan-report.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert f"unit {DEVICE}" in text and "Extension: 10 days" in text
    assert "INV-7" in (out / "loan-report.html").read_text()


def test_no_report_is_made_from_a_log_that_does_not_verify(tmp_path):
    from station.cli import main

    _, data_dir = run(tmp_path, "keep", days=2)
    lines = (data_dir / "audit.jsonl").read_bytes().split(b"\n")
    (tmp_path / "cut.jsonl").write_bytes(b"\n".join(lines[:1] + lines[2:]))
    assert main(["loan-report", str(tmp_path / "cut.jsonl"), "--out", str(tmp_path / "r")]) == 1


BOOK = {"started": START, "extensions": [{"days": 5, "paid_until": None, "reference": "R1", "at": START}],
        "warned": [7], "ended_notice": False}


@pytest.mark.parametrize("book, named", [
    (b"[1]", "the file is not a JSON object"),
    (json.dumps({**BOOK, "paused": True}).encode(), "paused: unknown key"),
    (json.dumps({**BOOK, "extensions": [{**BOOK["extensions"][0], "note": "x"}]}).encode(),
     "extensions.0.note: unknown key"),
    (json.dumps({**BOOK, "extensions": [{**BOOK["extensions"][0], "days": "5"}]}).encode(),
     "extensions.0.days: Input should be a valid integer"),
    (json.dumps({**BOOK, "extensions": [{**BOOK["extensions"][0], "paid_until": "14/02/2027"}]}).encode(),
     "extensions.0.paid_until: Value error"),
    (json.dumps({**BOOK, "started": "yesterday"}).encode(), "started: Input should be a valid number"),
    (b'{"started": 1800000000.0, "exten', "the file is not JSON"),  # torn
    (b" " * (2 << 20), "the file too large"),
])
def test_a_damaged_loan_book_is_refused_naming_the_file_and_the_key(tmp_path, book, named):
    (tmp_path / "loan.json").write_bytes(book)
    with pytest.raises(StorageError) as refused:
        LoanBook(LoanSettings(), tmp_path)
    assert str(tmp_path / "loan.json") in str(refused.value) and named in str(refused.value)


def test_a_book_written_by_the_unit_reads_back_and_an_older_one_without_notices_too(tmp_path):
    (tmp_path / "loan.json").write_text(json.dumps(BOOK), encoding="utf-8")
    book = LoanBook(LoanSettings(), tmp_path)
    assert book.started == START and book.end_wall() == START + 35 * DAY_S
    book.check(START + 33 * DAY_S)  # writes the book back: the 3-day warning is due
    assert LoanBook(LoanSettings(), tmp_path).check(START + 33 * DAY_S) == []  # ...and kept
    (tmp_path / "loan.json").write_text(json.dumps({"started": START}), encoding="utf-8")
    assert LoanBook(LoanSettings(), tmp_path).extensions == []


def test_a_unit_with_a_damaged_loan_book_stops_with_the_reason_and_the_storage_exit_code(tmp_path, capsys):
    from agent.cli import main
    from evaluation.demo import write_demo

    write_demo(tmp_path / "clip.mp4", seconds=1.0, width=160, height=90)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "loan.json").write_text(json.dumps({**BOOK, "warned": 7}), encoding="utf-8")
    (tmp_path / "unit.toml").write_text(f'data_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    assert main(["replay", str(tmp_path / "clip.mp4"), "--config", str(tmp_path / "unit.toml"), "--offline",
                 "--fast"]) == StorageError.exit_code
    said = capsys.readouterr().err
    assert f"loan book {tmp_path / 'data' / 'loan.json'}: warned: " in said and "Traceback" not in said
