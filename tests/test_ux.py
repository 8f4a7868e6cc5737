"""The command line as people meet it: overrides against a real broker, the progress bar on a real terminal,
distinct exit codes, and the guard that keeps the suite's runs out of the checkout."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from agent.config import env_overrides, load_config
from common.errors import ConfigError
from evaluation.demo import write_demo
from tests.conftest import checkout_files, written_since

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "mqtt://127.0.0.1:9"  # discard port: nothing listens


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "demo.mp4"
    write_demo(path, seconds=10.0)  # the figure enters at 6 s: one alarm, ended by the recording's end
    return path


def pid_agent(*args, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, **(env or {})})


def pid_station(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "station", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_env_variables_set_any_key_and_are_validated_like_the_file():
    config = load_config(None, environ={
        "PID_AGENT_BROKER__URL": "mqtts://broker.example:8883", "PID_AGENT_HEARTBEAT__INTERVAL_S": "15",
        "PID_AGENT_EVENTS__ARMED": "false", "PID_AGENT_DATA_DIR": "/srv/pid", "PATH": "/bin"})
    assert (config.broker.url, config.heartbeat.interval_s, config.events.armed, str(config.data_dir)) == \
           ("mqtts://broker.example:8883", 15.0, False, "/srv/pid")
    assert env_overrides({"PID_AGENT_BROKER__TLS__CA_FILE": "x", "OTHER": "y"}) == \
           {"broker.tls.ca_file": "PID_AGENT_BROKER__TLS__CA_FILE"}
    with pytest.raises(ConfigError, match=r"broker\.url \(from PID_AGENT_BROKER__URL\): String should match"):
        load_config(None, environ={"PID_AGENT_BROKER__URL": "http://x"})
    with pytest.raises(ConfigError, match=r"brokr \(from PID_AGENT_BROKR__URL\): unknown key"):
        load_config(None, environ={"PID_AGENT_BROKR__URL": "mqtt://x"})


def test_env_error_through_the_command_line(tmp_path):
    result = pid_agent("check-config", "config/default.toml", env={"PID_AGENT_CAMERA__FPS": "-1"})
    assert result.returncode == 2
    assert "camera.fps (from PID_AGENT_CAMERA__FPS): Input should be greater than 0" in result.stderr


@pytest.mark.broker
def test_broker_option_and_env_variable_reach_a_real_broker(mosquitto, tmp_path, short_clip):
    config = tmp_path / "unit.toml"
    config.write_text(f'data_dir = "{tmp_path / "unused"}"\n[broker]\nurl = "{UNREACHABLE}"\n', encoding="utf-8")
    by_option = pid_agent("replay", short_clip, "--fast", "--config", config, "--broker", mosquitto.url,
                          "--data-dir", tmp_path / "a", env={"PID_AGENT_BROKER__URL": UNREACHABLE})
    assert by_option.returncode == 0, by_option.stderr
    assert f"everything delivered to {mosquitto.url}" in by_option.stdout  # the option beats file and environment
    by_env = pid_agent("replay", short_clip, "--fast", "--config", config,
                       env={"PID_AGENT_BROKER__URL": mosquitto.url, "PID_AGENT_DATA_DIR": str(tmp_path / "b")})
    assert by_env.returncode == 0, by_env.stderr
    assert f"everything delivered to {mosquitto.url}" in by_env.stdout
    assert (tmp_path / "a" / "outbox.sqlite").exists() and (tmp_path / "b" / "outbox.sqlite").exists()
    assert not (tmp_path / "unused").exists()


def _run_on_a_terminal(args: list, columns: int = 120) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal of a known width; everything it drew."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    child = subprocess.Popen([sys.executable, "-m", "agent", *map(str, args)], stdin=slave, stdout=slave,
                             stderr=slave, cwd=ROOT, close_fds=True)
    os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    assert child.wait(timeout=300) == 0, drawn.decode(errors="replace")
    return drawn.decode()


def visible_lines(drawn: str) -> list[str]:
    """What stays on screen: for each line, the text after its last carriage return."""
    lines = []
    for line in drawn.split("\n"):
        parts = [part.rstrip() for part in line.rstrip("\r").split("\r")]
        if parts[-1]:
            lines.append(parts[-1])
    return lines


def test_progress_bar_stays_whole_around_log_lines(tmp_path, short_clip):
    # an unreachable broker: the uplink logs while the bar is drawn
    drawn = _run_on_a_terminal(["replay", short_clip, "--fast", "--broker", UNREACHABLE,
                                "--data-dir", tmp_path / "data"])
    assert drawn.index("frame/s") < drawn.index("cannot connect to broker")  # the bar was up when it logged
    screen = visible_lines(drawn)
    logs = [line for line in screen if " WARNING " in line or " INFO " in line]
    bars = [line for line in screen if "frame/s" in line]
    assert any("cannot connect to broker" in line for line in logs)
    assert not any("frame/s" in line for line in logs), "a log line was glued to the bar"
    assert len(bars) == 1, bars  # one bar left on screen, not one per log line
    assert "100/100" in bars[0] and "alarms=1" in bars[0] and "outbox=" in bars[0]
    assert screen[-2].startswith("frames: 100, alarms: 1")


def test_redirected_output_has_no_bar(tmp_path, short_clip):
    result = pid_agent("replay", short_clip, "--fast", "--offline", "--data-dir", tmp_path / "data")
    assert result.returncode == 0 and "frame/s" not in result.stderr


@pytest.mark.broker
def test_command_without_an_answer_has_its_own_exit_code(mosquitto):
    result = pid_station("command", "--broker", mosquitto.url, "--device", "nobody-here", '{"cmd": "arm"}',
                       "--timeout", "1")
    assert result.returncode == 6
    assert "no answer from nobody-here" in result.stderr and result.stdout == ""
    assert "applies it if it returns within its 30 s expiry" in result.stderr


def test_plot_without_matplotlib_is_a_sentence(tmp_path):
    hide_matplotlib = ("import sys; sys.modules['matplotlib'] = None; from agent.cli import main; "
                       f"sys.exit(main(['eval', '{tmp_path / 'clips.json'}', '--plot', '{tmp_path / 'plots'}']))")
    result = subprocess.run([sys.executable, "-c", hide_matplotlib], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
    assert result.returncode == 1
    assert "--plot needs matplotlib" in result.stderr and "Traceback" not in result.stderr


def test_os_errors_read_as_words():
    from agent.cli import in_words, os_error_in_words

    assert in_words("cannot open video x.mp4: [Errno 1094995529] Invalid data found") == \
           "cannot open video x.mp4: Invalid data found"
    assert os_error_in_words(PermissionError(13, "Permission denied", "/srv/pid")) == "/srv/pid: Permission denied"
    assert os_error_in_words(OSError(28, None)) == "No space left on device"


def test_the_checkout_guard_sees_a_file_written_into_it(tmp_path):
    (tmp_path / "var").mkdir()
    (tmp_path / "kept.txt").write_text("before")
    before = checkout_files(tmp_path)
    (tmp_path / "var" / "outbox.sqlite").write_bytes(b"heartbeat")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"")  # Python's own cache is no trace of a run
    assert written_since(before, checkout_files(tmp_path)) == ["var/outbox.sqlite"]
