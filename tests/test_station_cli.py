"""`pid-station`, the station tools' own entry point, and the old names under `pid-agent` that point to it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent.cli import main as agent_main
from agent.config import parse_config
from station.cli import main as station_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("old", "new"), [
    (["monitor", "--broker", "mqtt://127.0.0.1:1"], "monitor"), (["-v", "command", "{}"], "command"),
    (["keys", "show", "x.key"], "keys"), (["verify", "clip.mp4"], "verify"),
    (["loan-report", "audit.jsonl", "--out", "r"], "loan-report"), (["report", "records"], "deployment-report")])
def test_a_station_tool_under_its_old_name_says_where_it_went_and_exits_64(old, new, capsys):
    assert agent_main(old) == 64
    assert capsys.readouterr().err == f"pid-agent: moved: use pid-station {new}\n"


def test_station_keys_new_show_export_give_lines_a_unit_config_accepts(tmp_path, capsys):
    key = tmp_path / "station.key"
    assert station_main(["keys", "new", str(key), "--id", "desk-2"]) == 0
    assert key.stat().st_mode & 0o777 == 0o600
    made = capsys.readouterr().out
    assert station_main(["keys", "show", str(key)]) == 0
    shown = capsys.readouterr().out
    assert station_main(["keys", "export", str(key)]) == 0
    exported = capsys.readouterr().out
    public = shown.split("public key ")[1].strip()
    assert shown.startswith("key id desk-2,") and public in made
    config = parse_config(tomllib.loads(exported))
    assert [(k.id, k.public_key) for k in config.commands.station_keys] == [("desk-2", public)]


def test_python_m_station_is_pid_station_and_lists_its_tools():
    result = subprocess.run([sys.executable, "-m", "station", "--help"], capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("usage: pid-station")
    for tool in ("monitor", "command", "keys", "verify", "loan-report", "deployment-report"):
        assert tool in result.stdout
    typo = subprocess.run([sys.executable, "-m", "station", "monitr"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert typo.returncode == 64 and "invalid choice: 'monitr'" in typo.stderr
