"""Batch provisioning: one validated config per unit, a bad row stops the batch with its row number."""

import subprocess
import sys
from pathlib import Path

from agent.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make-unit-configs.py"


def run(units_csv: str, tmp_path: Path) -> subprocess.CompletedProcess:
    units = tmp_path / "units.csv"
    units.write_text(units_csv)
    return subprocess.run([sys.executable, SCRIPT, "--template", ROOT / "config/unit.example.toml",
                           "--units", units, "--out", tmp_path / "out"], capture_output=True, text=True)


def test_each_unit_gets_a_config_the_agent_accepts(tmp_path):
    result = run("device_id,site_ref,username,password\npid-0001,WM-1,u1,p1\npid-0002,WM-2,u2,p2\n", tmp_path)
    assert result.returncode == 0, result.stderr
    first = load_config(tmp_path / "out" / "pid-0001.toml")
    second = load_config(tmp_path / "out" / "pid-0002.toml")
    assert (first.device_id, first.site_ref, first.broker.username) == ("pid-0001", "WM-1", "u1")
    assert second.broker.password == "p2" and second.recorder.codec == "h264_v4l2m2m"
    # nested tables and arrays of tables of the template survive: sectors, GPIO lines, schedule
    assert [sector.name for sector in second.panorama.sectors] == ["gate", "yard", "sheds"]
    assert [line.id for line in second.gpio.inputs] == ["pir-gate", "lid", "mains"]
    assert second.schedule.periods[0].start == "18:00"


def test_bad_row_stops_the_batch_and_writes_nothing(tmp_path):
    result = run("device_id,site_ref\npid-0001,WM-1\nbad id!,WM-2\n", tmp_path)
    assert result.returncode == 2
    assert "units.csv:3" in result.stderr and "device_id" in result.stderr
    assert not (tmp_path / "out").exists()


def test_duplicate_device_id_is_refused(tmp_path):
    result = run("device_id,site_ref\npid-0001,WM-1\npid-0001,WM-2\n", tmp_path)
    assert result.returncode == 2 and "appears twice" in result.stderr
