"""`pid-agent selftest` against the synthetic and replay cameras, simulated GPIO and a real mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.config import parse_config
from agent.selftest import SELFTEST_FAILED, Check, clock_synchronised, exit_code, format_table, run_selftest
from common.clock import SystemClock
from tests.net import free_port
from tests.test_tls import tls_broker  # noqa: F401 - the TLS broker fixture, shared

ROOT = Path(__file__).resolve().parents[1]
GPIO = {"inputs": [{"id": "pir-gate", "pin": 17, "kind": "pir"}, {"id": "lid", "pin": 27, "kind": "tamper"}],
        "outputs": [{"id": "strobe", "pin": 22, "kind": "strobe"}, {"id": "siren", "pin": 23, "kind": "siren"}]}


def synchronised() -> tuple[bool, str]:
    return True, "synchronised (the test's answer: this host's time sync is not the unit's)"


def unit(tmp_path: Path, broker_url: str, camera: dict | None = None):
    return parse_config({
        "device_id": "pid-st", "data_dir": str(tmp_path / "data"), "broker": {"url": broker_url}, "gpio": GPIO,
        "camera": camera or {"backend": "synthetic", "fps": 10, "width": 320, "height": 180, "realtime": False}})


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}



@pytest.mark.broker
def test_a_healthy_unit_passes_every_check(mosquitto, tmp_path):
    checks = run_selftest(unit(tmp_path, mosquitto.url), SystemClock(), time_sync=synchronised)
    results = by_name(checks)
    assert [name for name, check in results.items() if check.ok is False] == []
    assert set(results) >= {"camera rate", "camera view", "detection", "gpio inputs", "output strobe", "broker",
                            "clock", "outbox", "disk"}
    assert results["output siren"].ok is None and "--siren" in results["output siren"].detail  # not sounded
    assert results["gpio inputs"].detail == "pir-gate=idle, lid=idle"
    assert "Success" in results["broker"].detail
    assert exit_code(checks) == 0 and format_table(checks).endswith("checks passed")


@pytest.mark.broker
def test_the_siren_is_toggled_only_when_asked(mosquitto, tmp_path):
    results = by_name(run_selftest(unit(tmp_path, mosquitto.url), SystemClock(), siren=True, time_sync=synchronised))
    assert results["output siren"].ok is True


def test_a_covered_camera_and_an_unreachable_broker_fail_with_their_reasons(tmp_path):
    black = tmp_path / "black"
    black.mkdir()
    for index in range(20):  # a recording of a covered lens: black frames with a little sensor noise
        noise = np.random.default_rng(index).integers(0, 3, (180, 320, 3), dtype=np.uint8)
        cv2.imwrite(str(black / f"{index:03d}.png"), noise)
    camera = {"backend": "replay", "source": str(black), "fps": 10, "realtime": False}
    checks = run_selftest(unit(tmp_path, f"mqtt://127.0.0.1:{free_port()}", camera), SystemClock(),
                          time_sync=synchronised)
    results = by_name(checks)
    assert results["camera view"].ok is False and "covered" in results["camera view"].detail
    assert results["broker"].ok is False and "refused" in results["broker"].detail
    assert results["camera rate"].ok and results["outbox"].ok  # the rest still checked and reported
    assert exit_code(checks) == SELFTEST_FAILED
    assert "2 failed" in format_table(checks)


def test_an_unsynchronised_clock_fails_and_an_unknown_one_does_not():
    assert exit_code([Check("clock", False, "adjtimex: not synchronised")]) == SELFTEST_FAILED
    assert exit_code([Check("clock", None, "unknown")]) == 0
    ok, detail = clock_synchronised()  # this host's own answer, whatever it is, names where it came from
    assert ok in (True, False, None) and detail.split(":")[0].split(" ")[0] in ("timedatectl", "adjtimex", "unknown")


def test_why_timedatectl_gave_no_answer_is_kept_in_the_clock_checks_detail(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no timedatectl on this PATH: it cannot even start
    ok, detail = clock_synchronised()
    assert "timedatectl could not run: No such file or directory" in detail
    assert detail.split(":")[0].split(" ")[0] in ("adjtimex", "unknown")  # the answer still comes from elsewhere
    tool = tmp_path / "timedatectl"  # a container without systemd: it runs, and says why it cannot tell
    tool.write_text("#!/bin/sh\necho 'System has not been booted with systemd as init system (PID 1).' >&2\n"
                    "exit 1\n")
    tool.chmod(0o755)
    ok, detail = clock_synchronised()
    assert "timedatectl failed (exit 1): System has not been booted with systemd as init system (PID 1)." in detail


def test_cli_prints_the_table_and_exits_non_zero_on_failure(tmp_path):
    config = tmp_path / "unit.toml"
    config.write_text(f'device_id = "pid-st"\ndata_dir = "{tmp_path / "data"}"\n'
                      f'[broker]\nurl = "mqtt://127.0.0.1:{free_port()}"\n'
                      '[camera]\nbackend = "synthetic"\nfps = 10\nwidth = 320\nheight = 180\n')
    result = subprocess.run([sys.executable, "-m", "agent", "selftest", "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == SELFTEST_FAILED, result.stderr
    assert "broker" in result.stdout and "FAIL" in result.stdout and "checks passed" in result.stdout
    assert "selftest event" in result.stdout and "queued in the outbox" in result.stdout  # broker down: kept


@pytest.mark.broker
@pytest.mark.parametrize("password, passes", [("s3cret", True), ("wrong", False)])
def test_broker_check_uses_the_units_tls_and_identity(tls_broker, tmp_path, password, passes):  # noqa: F811
    broker, ca = tls_broker
    config = parse_config({**unit(tmp_path, "mqtt://127.0.0.1").model_dump(mode="json"), "broker": {
        "url": f"mqtts://127.0.0.1:{broker.port}", "username": "pid-0042", "password": password,
        "tls": {"ca_file": str(ca)}}})
    check = by_name(run_selftest(config, SystemClock(), time_sync=synchronised))["broker"]
    assert check.ok is passes and "TLS as pid-0042" in check.detail, check.detail


# the result upstream: a signed `selftest` event through the outbox ------------------------------------------
def watch(broker_url: str):
    from station.monitor import Monitor

    monitor = Monitor(broker_url, "pid-st", None, printer=lambda line: None)
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, timeout=10), "monitor could not subscribe"
    return monitor


def selftest_events(monitor) -> list[dict]:
    return [event for event in monitor.events if event["kind"] == "selftest"]


@pytest.mark.broker
def test_a_passing_result_reaches_the_broker_as_a_signed_selftest_event(mosquitto, tmp_path):
    from agent.evidence.keys import UnitKey
    from agent.selftest import report_upstream
    from station.verify import verify_audit

    config = unit(tmp_path, mosquitto.url)
    monitor = watch(mosquitto.url)
    try:
        checks = run_selftest(config, SystemClock(), time_sync=synchronised)
        said = report_upstream(config, SystemClock(), checks, send=True)
        assert "delivered" in said, said
        assert monitor.wait_for(lambda m: selftest_events(m), timeout=10)
    finally:
        monitor.stop()
    (event,) = selftest_events(monitor)
    assert event["passed"] is True and event["failed"] == [] and event["device_id"] == "pid-st"
    assert [(c["name"], c["ok"]) for c in event["checks"]] == [(c.name, c.ok) for c in checks]
    public = UnitKey.load_or_create(config.data_dir).public_b64()
    assert event["key"] == UnitKey.load_or_create(config.data_dir).id and event["sig"]
    audit = config.data_dir / "audit.jsonl"
    assert verify_audit(audit, public_b64=public).ok
    kinds = [json.loads(line)["kind"] for line in audit.read_text().splitlines()]
    assert kinds == ["start", "event", "stop"]


@pytest.mark.broker
def test_a_failing_result_names_its_failed_checks_upstream(mosquitto, tmp_path):
    from agent.selftest import report_upstream

    black = tmp_path / "black"
    black.mkdir()
    for index in range(20):
        cv2.imwrite(str(black / f"{index:03d}.png"), np.zeros((180, 320, 3), np.uint8))
    config = unit(tmp_path, mosquitto.url, {"backend": "replay", "source": str(black), "fps": 10, "realtime": False})
    monitor = watch(mosquitto.url)
    try:
        checks = run_selftest(config, SystemClock(), time_sync=synchronised)
        assert "delivered" in report_upstream(config, SystemClock(), checks, send=True)
        assert monitor.wait_for(lambda m: selftest_events(m), timeout=10)
    finally:
        monitor.stop()
    (event,) = selftest_events(monitor)
    assert event["passed"] is False and event["failed"] == ["camera view"]


def test_with_the_broker_down_or_the_agent_running_the_event_waits_in_the_outbox(tmp_path):
    from agent.selftest import report_upstream
    from agent.storage.outbox import Outbox

    config = unit(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
    checks = run_selftest(config, SystemClock(), time_sync=synchronised)
    said = report_upstream(config, SystemClock(), checks, send=True)
    assert "queued in the outbox (broker check failed)" in said
    said = report_upstream(config, SystemClock(), [Check("clock", True, "ok")], send=False)
    assert "the running agent sends it" in said
    outbox = Outbox(config.data_dir, config.outbox.max_bytes, SystemClock())
    try:
        rows = [json.loads(row.payload) for row in outbox.pending(0, 10)]
    finally:
        outbox.close()
    assert [(row["kind"], row["passed"], row["failed"]) for row in rows] == [
        ("selftest", False, ["broker"]), ("selftest", True, [])]
    assert rows[0]["seq"] < rows[1]["seq"]
