"""`pid-agent run` with [commissioning] enabled serves the installer's page beside the unit (plain HTTP on loopback
here; a unit uses HTTPS), and without it serves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import reap
from tests.net import free_port as _free_port

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "ladder-and-hivis"



def _unit(tmp_path: Path, mosquitto, enabled: bool) -> tuple[Path, int]:
    from evaluation.demo import write_demo

    clip = tmp_path / "walk.mp4"
    write_demo(clip, seconds=30.0, width=160, height=90)
    (tmp_path / "password").write_text(PASSWORD + "\n", encoding="utf-8")
    port = _free_port()
    config = tmp_path / "unit.toml"
    config.write_text(f'device_id = "pid-web-run"\ndata_dir = "{tmp_path / "data"}"\n'
                      f'[broker]\nurl = "{mosquitto.url}"\n'
                      f'[camera]\nbackend = "replay"\nsource = "{clip}"\nrealtime = true\n'
                      f'[commissioning]\nenabled = {str(enabled).lower()}\ntls = false\nport = {port}\n'
                      f'password_file = "{tmp_path / "password"}"\n', encoding="utf-8")
    return config, port


def _start(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def _until_line(process: subprocess.Popen, words: str) -> str:
    """stderr lines until one holds `words` (the page logs its address once it listens)."""
    seen = []
    for line in process.stderr:
        seen.append(line)
        if words in line or "frames:" in line:
            return line
    raise AssertionError("".join(seen))


def test_run_with_commissioning_enabled_serves_the_login_page(tmp_path, mosquitto):
    config, port = _unit(tmp_path, mosquitto, enabled=True)
    process = _start(config)
    try:
        line = _until_line(process, "commissioning page at")
        assert f"http://127.0.0.1:{port}/" in line
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        assert 'id="login-button"' in page and "Unit commissioning" in page
        login = urllib.request.Request(f"http://127.0.0.1:{port}/api/login", method="POST",
                                       data=json.dumps({"password": PASSWORD}).encode(),
                                       headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(login, timeout=10) as answer:
            assert answer.status == 200 and "pid_session=" in answer.headers["Set-Cookie"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        reap(process)


def test_run_without_it_serves_nothing(tmp_path, mosquitto):
    config, port = _unit(tmp_path, mosquitto, enabled=False)
    process = _start(config)
    try:
        _until_line(process, "no station key configured")  # the unit runs; the page would be up by now
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
            raise AssertionError("a page was served with [commissioning] enabled = false")
        except urllib.error.URLError as refused:
            assert isinstance(refused.reason, ConnectionRefusedError)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        reap(process)
