"""Shared fixtures: a real mosquitto broker on loopback that a test can stop and restart on the same port, and the
guard that fails the run when a test writes into the checkout (tests use temporary data dirs only)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

# hypothesis keeps examples and a unicode table under .hypothesis/ in the working directory by default: the suite
# must not write into the checkout, so it gets a temporary folder (read at hypothesis's first import)
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", tempfile.mkdtemp(prefix="pid-agent-hypothesis-"))

from tests.footage import under_ci
from tests.net import accepting as _accepting
from tests.net import free_port as _free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
ROOT = Path(__file__).resolve().parents[1]
# written by Python, pytest and the install, never by the agent: not a trace of a run
NOT_TRACES = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}
# test artefacts kept for a person to look at (the browser test's screenshots), not a trace of a run
ARTEFACTS = ROOT / "build" / "screenshots"


def checkout_files(root: Path = ROOT) -> dict[str, tuple[int, int]]:
    """Every file of the checkout (ignored ones included: var/, build/) with its size and modification time."""
    files = {}
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in NOT_TRACES and not name.endswith(".egg-info")
                         and Path(folder, name) != ARTEFACTS]
        for name in names:
            path = Path(folder, name)
            with contextlib.suppress(FileNotFoundError):
                stat = path.lstat()
                files[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return files


def written_since(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    return sorted(path for path, mark in after.items() if before.get(path) != mark)


@pytest.fixture(autouse=True, scope="session")
def checkout_stays_clean():
    """A test that writes into the checkout (a default data_dir, a report beside the code) fails the run: its
    outbox would hold heartbeats and alarms that a later real run sends to a real broker."""
    before = checkout_files()
    yield
    written = written_since(before, checkout_files())
    assert not written, f"the tests wrote into the checkout {ROOT}: {written[:20]}"




class Broker:
    """A mosquitto process; stop() and start() keep the port so clients reconnect to the same address."""

    def __init__(self, workdir: Path, persistence: bool = False) -> None:
        self.port = _free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        # max_queued_messages 0: never drop QoS 1 messages queued for a slow or absent subscriber.
        settings = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "max_queued_messages 0",
                    f"log_dest file {self.log}", "log_type error", "log_type warning"]
        if os.geteuid() == 0:
            # Run as root, mosquitto would switch to user "mosquitto", which cannot write this test's temp dir.
            settings.append("user root")
        if persistence:
            # Sessions and queued messages survive stop()/start(), like a production broker.
            settings += ["persistence true", f"persistence_location {workdir}/"]
        else:
            settings.append("persistence false")
        self.config.write_text("\n".join(settings) + "\n")
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            raise RuntimeError("broker already running")
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout  # waiting on a real process, not timing logic
        while not _accepting(self.port):
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace")
                self.process = None
                raise RuntimeError(f"mosquitto exited at start-up: {err}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stderr.close()
        self.process = None


def reap(child: subprocess.Popen) -> None:
    """End a test's child process if it still runs, and close its pipes."""
    if child.poll() is None:
        child.kill()
        child.wait()
    for stream in (child.stdin, child.stdout, child.stderr):
        if stream is not None:
            stream.close()


def _require_mosquitto() -> None:
    if not Path(MOSQUITTO).exists():
        if under_ci():
            pytest.fail(f"mosquitto not installed at {MOSQUITTO}, and CI=true requires the broker tests")
        pytest.skip(f"mosquitto not installed at {MOSQUITTO}")


def _run_broker(tmp_path, persistence: bool):
    _require_mosquitto()
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder, persistence)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto(tmp_path):
    """A broker without persistence (the contract's test broker)."""
    yield from _run_broker(tmp_path, persistence=False)


@pytest.fixture
def mosquitto_persistent(tmp_path):
    """A broker whose sessions survive restarts, so a persistent monitor misses nothing while it is down."""
    yield from _run_broker(tmp_path, persistence=True)
