"""systemd notify protocol and watchdog, spoken to a NOTIFY_SOCKET the test creates; timing on a ManualClock."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.logsetup import PLAIN_FORMAT, JournalFormatter, priority, to_journal
from agent.pipeline import Agent
from agent.service import Notifier, Service, UnitState, feed_interval_s
from common.clock import ManualClock, SystemClock
from drivers.camera.synthetic import SyntheticCamera


class NotifySocket:
    """The service manager's end: a datagram socket bound where $NOTIFY_SOCKET points, read as systemd does
    (at once, so a sender never finds it full)."""

    MARK = "--mark--"

    def __init__(self, address: str) -> None:
        self.address = address
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self._target)
        self._received: list[str] = []
        self._marked = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def _target(self) -> str:
        return "\0" + self.address[1:] if self.address.startswith("@") else self.address

    def _read(self) -> None:
        while True:
            try:
                message = self.socket.recv(4096).decode()
            except OSError:
                return
            if message == self.MARK:
                self._marked.set()
            else:
                self._received.append(message)

    def drain(self) -> list[str]:
        """Every datagram sent so far: a mark sent now arrives after them (one socket keeps datagram order)."""
        self._marked.clear()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as marker:
            marker.sendto(self.MARK.encode(), self._target)
        assert self._marked.wait(10)
        messages, self._received = self._received, []
        return messages

    def close(self) -> None:
        self.socket.shutdown(socket.SHUT_RDWR)
        self.socket.close()


@pytest.fixture
def manager(tmp_path):
    sock = NotifySocket(str(tmp_path / "notify"))
    yield sock
    sock.close()


def service_on(manager: NotifySocket, clock, watchdog_usec: int = 2_000_000) -> Service:
    return Service.from_environment(clock, {"NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": str(watchdog_usec)})


def up(camera: str = "ok", streaming: bool = True) -> UnitState:
    return UnitState(armed=True, outbox_depth=3, camera=camera, streaming=streaming)


def test_abstract_socket_names_are_reached():
    manager = NotifySocket(f"@pid-agent-test-{os.getpid()}")
    try:
        assert Notifier(manager.address).send("READY=1")
        assert manager.drain() == ["READY=1"]
    finally:
        manager.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails():
    service = Service.from_environment(ManualClock(), {})
    service.frame_done()
    service.supervised(up())
    assert service.ready and not service.notifier.send("READY=1")


def test_gone_service_manager_does_not_break_the_agent(tmp_path):
    assert not Notifier(str(tmp_path / "nobody-listens")).send("WATCHDOG=1")


def test_feed_interval_is_half_the_announced_watchdog_period():
    assert feed_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert feed_interval_s({}) == feed_interval_s({"WATCHDOG_USEC": "junk"}) == 1.0


def test_ready_once_on_the_first_frame_then_the_watchdog_at_its_interval(manager):
    clock = ManualClock()
    service = service_on(manager, clock)  # feeds every 1 s
    assert manager.drain() == []  # nothing before a frame went through
    service.frame_done()
    assert manager.drain() == ["READY=1\nSTATUS=camera delivers frames", "WATCHDOG=1"]
    for _ in range(7):  # 8 fps for 0.875 s: no second feed yet
        clock.advance(0.125)
        service.frame_done()
    assert manager.drain() == []
    clock.advance(0.125)
    service.frame_done()
    assert manager.drain() == ["WATCHDOG=1"]


def test_status_line_says_armed_alarms_today_outbox_and_link(manager):
    clock = ManualClock()
    service = service_on(manager, clock)
    service.link = lambda: "up"
    service.alarm_raised()
    service.alarm_raised()
    service.supervised(up())
    assert manager.drain() == ["STATUS=armed; 2 alarms today; outbox 3; link up; camera ok"]
    clock.advance(86_400)  # the next day starts counting from zero
    assert service.alarms_today == 0
    service.supervised(UnitState(armed=False, outbox_depth=0, camera="error", streaming=False))
    assert manager.drain()[0] == "STATUS=disarmed; 0 alarms today; outbox 0; link up; camera error, not open"


def test_a_hung_frame_loop_with_a_working_camera_starves_the_watchdog(manager):
    clock = ManualClock()
    service = service_on(manager, clock)
    service.frame_done()
    manager.drain()
    for _ in range(60):  # the loop hangs: a minute of supervisor passes, the camera still reported ok
        clock.advance(1.0)
        service.supervised(up(camera="ok", streaming=True))
    assert not any(message == "WATCHDOG=1" for message in manager.drain())


@pytest.mark.parametrize("camera, streaming", [("stalled", True), ("error", True), ("error", False)])
def test_a_camera_that_is_down_but_handled_keeps_the_watchdog_fed(manager, camera, streaming):
    clock = ManualClock()
    service = service_on(manager, clock)
    service.frame_done()
    manager.drain()
    feeds = 0
    for _ in range(10):
        clock.advance(1.0)
        service.supervised(up(camera=camera, streaming=streaming))
        feeds += manager.drain().count("WATCHDOG=1")
    assert feeds == 10


def _agent(tmp_path: Path, service: Service, on_frame=None) -> Agent:
    config = parse_config({"device_id": "pid-svc", "data_dir": str(tmp_path / "data"),
                           "camera": {"backend": "synthetic", "fps": 10, "width": 320, "height": 180}})
    clock = SystemClock()
    camera = SyntheticCamera(clock=clock, width=320, height=180, fps=10, duration_s=3.0, realtime=False)
    return Agent(config, camera, clock, upload=False, on_frame=on_frame, service=service)


def test_agent_is_ready_after_its_first_frame_feeds_the_watchdog_and_says_when_it_stops(tmp_path, manager):
    service = service_on(manager, SystemClock(), watchdog_usec=1)  # feed on every frame
    agent = _agent(tmp_path, service)
    summary = agent.run()
    agent.stop()
    messages = manager.drain()
    ready = [index for index, message in enumerate(messages) if message.startswith("READY=1")]
    assert len(ready) == 1 and messages[ready[0] + 1] == "WATCHDOG=1"  # then each frame feeds it
    assert messages[ready[0]:].count("WATCHDOG=1") >= summary.frames == 30  # (+1 if the supervisor saw it end)
    assert any(message.startswith("STATUS=armed; 0 alarms today; outbox ") for message in messages)
    assert messages[-1] == "STOPPING=1\nSTATUS=stopping"


def test_agent_whose_frame_loop_hangs_stops_feeding_and_its_supervisor_cannot_cover_for_it(tmp_path, manager):
    hung, release = threading.Event(), threading.Event()

    def hang_on_the_fifth_frame(frame) -> None:
        if frame.index == 4:
            hung.set()
            release.wait(60)

    agent = _agent(tmp_path, service_on(manager, SystemClock(), watchdog_usec=1), hang_on_the_fifth_frame)
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        assert hung.wait(60)
        before = manager.drain()
        ready = [index for index, message in enumerate(before) if message.startswith("READY=1")]
        assert len(ready) == 1 and before[ready[0]:].count("WATCHDOG=1") == 5  # frames 0-4 fed it
        # a supervisor pass needs the unit's lock, which the hung frame holds: it can neither feed nor report
        supervisor_pass = threading.Thread(target=agent.supervisor.tick, daemon=True)
        supervisor_pass.start()
        supervisor_pass.join(1.0)
        assert supervisor_pass.is_alive()
        assert "WATCHDOG=1" not in manager.drain()
    finally:
        release.set()
        runner.join(60)
    assert not runner.is_alive() and agent.summary.frames == 30


# the unit file ----------------------------------------------------------------------------------------------
UNIT = Path(__file__).resolve().parents[1] / "systemd" / "pid-agent.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None and os.environ.get("CI") != "true",
    reason="systemd-analyze is not installed (Debian package `systemd`; .ci/run installs it, so CI does not skip)")


def test_unit_is_notify_with_a_watchdog_and_private_files():
    settings = [line.strip() for line in UNIT.read_text().splitlines()]
    for wanted in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30", "UMask=0077", "ProtectSystem=strict",
                   "ReadWritePaths=/var/lib/pid-agent", "DevicePolicy=closed", "CapabilityBoundingSet=",
                   "SupplementaryGroups=video gpio", "User=pid-agent"):
        assert wanted in settings, wanted


@needs_analyze
def test_unit_file_verifies(tmp_path):
    # verify checks that ExecStart= exists: point it at a stand-in, the rest of the file unchanged
    unit = tmp_path / "pid-agent.service"
    unit.write_text(UNIT.read_text().replace("/opt/pid-agent/.venv/bin/pid-agent", shutil.which("true")))
    result = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr


@needs_analyze
def test_unit_file_is_rated_ok_by_systemd_analyze_security():
    result = subprocess.run([ANALYZE, "security", "--offline=yes", "--no-pager", str(UNIT)],
                            capture_output=True, text=True)
    exposure = re.search(r"Overall exposure level for pid-agent\.service: ([0-9.]+)", result.stdout)
    assert exposure is not None, result.stdout + result.stderr
    assert float(exposure.group(1)) <= 2.5, result.stdout


# logging ----------------------------------------------------------------------------------------------------
def _log_through(stream, environ) -> list[str]:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter() if to_journal(stream, environ) else logging.Formatter(PLAIN_FORMAT))
    logger = logging.getLogger("pid-agent.test-journal")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("camera: stalled")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("supervisor pass failed")
    finally:
        logger.removeHandler(handler)
    stream.seek(0)
    return stream.read().splitlines()


def test_under_systemd_lines_carry_journal_priorities_and_no_timestamp(tmp_path):
    with (tmp_path / "journal").open("w+") as stream:
        status = os.fstat(stream.fileno())
        lines = _log_through(stream, {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"})
    assert lines[0] == "<4>pid-agent.test-journal: camera: stalled"
    assert lines[1] == "<3>pid-agent.test-journal: supervisor pass failed"
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines[1:])  # the traceback stays an error
    assert [priority(level) for level in (logging.DEBUG, logging.INFO, logging.CRITICAL)] == [7, 6, 2]


def test_elsewhere_stderr_stays_plain_with_timestamps(tmp_path):
    with (tmp_path / "stderr").open("w+") as stream:
        lines = _log_through(stream, {"JOURNAL_STREAM": "1:2"})  # announced for another stream: not ours
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ WARNING pid-agent.test-journal: camera: stalled", lines[0])
