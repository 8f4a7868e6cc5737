"""The command line on bad input: a clear message naming the problem and a non-zero exit; offline replay spools."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.demo import write_demo

ROOT = Path(__file__).resolve().parents[1]


def pid_agent(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=300)


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.mp4"
    write_demo(path, seconds=25.0)
    return path


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_check_config_accepts_bundled_configs():
    for name in ("config/default.toml", "config/unit.example.toml"):
        result = pid_agent("check-config", "--schema-only", name)  # their files are a unit's, not this machine's
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout


@pytest.mark.parametrize("text, expected", [
    ("[camera]\nfps = -2\n", "camera.fps: Input should be greater than 0"),
    ("[recorder]\npre_rol_s = 5\n", "recorder.pre_rol_s: unknown key"),
    ("device_id = 'has space'\n", "device_id: String should match pattern"),
    ("[broker]\nurl = 'http://x'\n", "broker.url"),
    ("[camera\n", "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path, text, expected):
    result = pid_agent("check-config", write_config(tmp_path / "bad.toml", text))
    assert result.returncode == 2
    assert expected in result.stderr


def test_missing_config_file(tmp_path):
    result = pid_agent("run", "--config", tmp_path / "absent.toml")
    assert result.returncode == 2 and "config file not found" in result.stderr


def test_missing_video_is_reported_and_queues_no_heartbeat(tmp_path):
    result = pid_agent("replay", tmp_path / "no-such.mp4", "--fast", "--offline", "--data-dir", tmp_path / "data")
    assert result.returncode == 3
    assert "no-such.mp4" in result.stderr
    # the camera never opened: nothing in the outbox claims it was fine
    with sqlite3.connect(tmp_path / "data" / "outbox.sqlite") as db:
        kinds = [kind for (kind,) in db.execute("SELECT kind FROM messages")]
    assert "heartbeat" not in kinds


def test_corrupt_video_is_reported(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x20ftypisom" + b"garbage" * 500)
    config = write_config(tmp_path / "c.toml", f"data_dir = '{tmp_path / 'data'}'\n")
    result = pid_agent("replay", bad, "--fast", "--offline", "--config", config)
    assert result.returncode == 3
    assert "corrupt.mp4" in result.stderr
    assert "[Errno" not in result.stderr  # FFmpeg's error number means nothing to a reader; its words stay


def test_unwritable_outbox_path_is_reported(tmp_path, demo_clip):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = write_config(tmp_path / "c.toml", f"data_dir = '{blocker / 'outbox'}'\n")
    result = pid_agent("replay", demo_clip, "--fast", "--offline", "--config", config)
    assert result.returncode == 4
    assert str(blocker / "outbox") in result.stderr


def test_offline_replay_detects_records_and_spools(tmp_path, demo_clip):
    config = write_config(tmp_path / "c.toml", f"data_dir = '{tmp_path / 'data'}'\n")
    events_path = tmp_path / "events.jsonl"
    result = pid_agent("replay", demo_clip, "--fast", "--offline", "--config", config, "--events", events_path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert [(e["phase"], e["seq"]) for e in events] == [("start", 1), ("end", 2)]
    start, end = events
    # the figure enters at 6.0 s (frame 60 at 10 fps); three motion frames raise the alarm
    assert 60 <= start["frame"] <= 66
    assert end["reason"] == "motion stopped"
    clip = tmp_path / "data" / "media" / start["event_id"] / "clip.mp4"
    assert clip.stat().st_size == end["clip"]["bytes"]
    assert "wait in the outbox at" in result.stdout and str(tmp_path / "data") in result.stdout


def test_replay_fps_is_validated_like_the_config(tmp_path, demo_clip):
    result = pid_agent("replay", demo_clip, "--fast", "--offline", "--fps", "-5", "--data-dir", tmp_path)
    assert result.returncode == 2 and "camera.fps (from --fps)" in result.stderr


def test_usage_errors_have_their_own_exit_code(tmp_path):
    result = pid_agent("replay", "--no-such-option")
    assert result.returncode == 64 and "usage:" in result.stderr


def test_events_file_in_a_missing_folder_is_reported(tmp_path, demo_clip):
    result = pid_agent("replay", demo_clip, "--fast", "--offline", "--events", tmp_path / "nope" / "e.jsonl",
                       "--data-dir", tmp_path / "data")
    assert result.returncode == 2 and "--events" in result.stderr


def test_unusable_encoder_is_a_config_error_at_start_up(tmp_path, demo_clip):
    config = write_config(tmp_path / "c.toml", f"data_dir = '{tmp_path / 'data'}'\n[recorder]\ncodec = 'libx264x'\n")
    assert pid_agent("check-config", config).returncode == 0  # valid TOML and types; the encoder is this machine's
    result = pid_agent("replay", demo_clip, "--fast", "--offline", "--config", config)
    assert result.returncode == 2 and "recorder.codec / recorder.preset" in result.stderr


def test_a_misspelt_preset_is_refused_by_check_config(tmp_path):
    config = write_config(tmp_path / "c.toml", f"data_dir = '{tmp_path / 'data'}'\n[recorder]\npreset = 'superfastt'\n")
    result = pid_agent("check-config", config)
    assert result.returncode == 2 and "recorder.preset" in result.stderr and "ultrafast" in result.stderr


def test_a_clip_the_outbox_cannot_hold_is_a_storage_fault_not_a_crash(tmp_path, demo_clip):
    config = write_config(tmp_path / "c.toml", f"data_dir = '{tmp_path / 'data'}'\n[outbox]\nmax_bytes = 1048576\n"
                                                "[recorder]\nqp = 0\n")  # lossless: the clip is far over 1 MiB
    events_path = tmp_path / "events.jsonl"
    result = pid_agent("replay", demo_clip, "--fast", "--offline", "--config", config, "--events", events_path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    # the clip being recorded counts in the bound: the outbox may say it is full (a state) while it grows
    states = [e for e in events if e.get("reason") in ("outbox_full", "disk_full")]
    assert all(e["reason"] == "outbox_full" for e in states), states
    events = [e for e in events if e not in states]
    kinds = [(e["kind"], e.get("phase"), e.get("source")) for e in events]
    assert kinds == [("intrusion", "start", None), ("fault", None, "storage"), ("intrusion", "end", None)]
    assert "does not fit" in events[1]["message"] and events[1]["alarm_event_id"] == events[0]["event_id"]
    assert events[2]["clip"] is None and events[2]["snapshot"]["bytes"] > 0
    assert not (tmp_path / "data" / "media" / events[0]["event_id"] / "clip.mp4").exists()
    # the next start finds nothing open: no second, contradictory end
    again = pid_agent("replay", demo_clip, "--fast", "--offline", "--config", config, "--events", events_path)
    assert "incomplete" not in again.stderr
    assert all(not e.get("incomplete") for e in map(json.loads, events_path.read_text().splitlines()))
