"""Batch provisioning: one validated config per unit, a bad row stops the batch with its row number."""

import os
import stat
import subprocess
import sys
import zipfile
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


# scripts/provision --root -----------------------------------------------------------------------------------
PROVISION = ROOT / "scripts" / "provision"


def make_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "wheels").mkdir(parents=True)
    (bundle / "certs").mkdir()
    (bundle / "keys").mkdir()
    (bundle / "unit.toml").write_text((ROOT / "config/unit.example.toml").read_text())  # broker.tls.ca_file set
    with zipfile.ZipFile(bundle / "wheels" / "pid_agent-0.1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("pid_agent-0.1.0.dist-info/METADATA", "Name: pid-agent\nVersion: 0.1.0\n")
    (bundle / "certs" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (bundle / "keys" / "signing.key").write_text("private\n")
    return bundle


def provision(bundle: Path, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, PROVISION, bundle, "--root", root], capture_output=True, text=True)


def tree(root: Path) -> dict[str, tuple]:
    """Every path under root with its mode, mtime and content (or link target): what a second run must not change."""
    snapshot = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        body = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else None
        snapshot[str(path.relative_to(root))] = (stat.S_IMODE(info.st_mode), info.st_mtime_ns, body)
    return snapshot


def test_provision_into_a_root_writes_the_unit_and_a_second_run_changes_nothing(tmp_path):
    bundle, root = make_bundle(tmp_path), tmp_path / "root"
    first = provision(bundle, root)
    assert first.returncode == 0, first.stderr
    after_first = tree(root)
    config = load_config(root / "etc/pid-agent/agent.toml")
    assert config.device_id == "pid-0042"
    assert after_first["etc/pid-agent/agent.toml"][0] == 0o640
    assert after_first["etc/pid-agent/keys"][0] == 0o750 and after_first["etc/pid-agent/keys/signing.key"][0] == 0o640
    assert after_first["etc/pid-agent/ca.pem"][0] == 0o644
    assert after_first["var/lib/pid-agent"][0] == 0o700
    unit = (root / "etc/systemd/system/pid-agent.service").read_bytes()
    assert unit == (ROOT / "systemd/pid-agent.service").read_bytes()
    assert after_first["etc/systemd/system/multi-user.target.wants/pid-agent.service"][2] == \
        "/etc/systemd/system/pid-agent.service"  # enabled
    assert b"m pid-agent video" in after_first["usr/lib/sysusers.d/pid-agent.conf"][2]
    assert "on the unit: systemd-sysusers" in first.stdout  # system steps are listed, not run, under --root

    second = provision(bundle, root)
    assert second.returncode == 0, second.stderr
    assert tree(root) == after_first  # byte for byte, mode for mode, not even a timestamp touched
    assert "changed /" not in second.stdout and "0 changes" in second.stdout


def test_provision_repairs_a_changed_mode_and_file(tmp_path):
    bundle, root = make_bundle(tmp_path), tmp_path / "root"
    provision(bundle, root)
    os.chmod(root / "etc/pid-agent/agent.toml", 0o644)
    (root / "etc/systemd/system/pid-agent.service").write_text("[Service]\n")
    again = provision(bundle, root)
    assert "changed /etc/pid-agent/agent.toml" in again.stdout and "2 changes" in again.stdout
    assert stat.S_IMODE((root / "etc/pid-agent/agent.toml").stat().st_mode) == 0o640


def test_a_bad_bundle_stops_before_any_change(tmp_path):
    bundle, root = make_bundle(tmp_path), tmp_path / "root"
    (bundle / "certs" / "ca.pem").unlink()  # the config names /etc/pid-agent/ca.pem
    result = provision(bundle, root)
    assert result.returncode == 2 and "ca.pem" in result.stderr and "nothing changed" in result.stderr
    assert not root.exists()
    (bundle / "certs" / "ca.pem").write_text("ca")
    (bundle / "wheels" / "pid_agent-0.1.0-py3-none-any.whl").unlink()
    result = provision(bundle, root)
    assert result.returncode == 2 and "no pid_agent wheel" in result.stderr and not root.exists()


# scripts/make-bundle (make dist UNIT=...) --------------------------------------------------------------------
MAKE_BUNDLE = ROOT / "scripts" / "make-bundle"


def test_an_assembled_bundle_is_accepted_by_provision(tmp_path):
    parts = make_bundle(tmp_path)  # a tiny wheel set: the agent's wheel only, as `pip wheel --no-deps` would give
    bundle, root = tmp_path / "assembled", tmp_path / "root"
    made = subprocess.run([sys.executable, MAKE_BUNDLE, parts / "unit.toml", "--wheels", parts / "wheels",
                           "--certs", parts / "certs", "--keys", parts / "keys", "--out", bundle],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert (bundle / "tools/scripts/provision").is_file() and (bundle / "keys/signing.key").is_file()
    result = provision(bundle, root)
    assert result.returncode == 0, result.stderr
    assert load_config(root / "etc/pid-agent/agent.toml").device_id == "pid-0042"


def test_make_bundle_refuses_a_config_whose_certificate_is_missing(tmp_path):
    parts = make_bundle(tmp_path)
    made = subprocess.run([sys.executable, MAKE_BUNDLE, parts / "unit.toml", "--wheels", parts / "wheels",
                           "--out", tmp_path / "assembled"], capture_output=True, text=True)
    assert made.returncode == 2 and "ca.pem" in made.stderr and not (tmp_path / "assembled").exists()


# scripts/install-unit.sh: the old name, now only a way into provision -------------------------------------------
INSTALL_UNIT = ROOT / "scripts" / "install-unit.sh"


def test_install_unit_is_provision_under_its_old_name(tmp_path):
    bundle = make_bundle(tmp_path)
    by_wrapper = subprocess.run(["bash", INSTALL_UNIT, bundle, "--root", tmp_path / "a"], capture_output=True,
                                text=True, env={**os.environ, "PYTHON": sys.executable})
    assert by_wrapper.returncode == 0, by_wrapper.stderr
    assert provision(bundle, tmp_path / "b").returncode == 0
    by_wrapper, by_provision = (content_of(tmp_path / name) for name in ("a", "b"))
    assert by_wrapper == by_provision and "etc/pid-agent/agent.toml" in by_wrapper


def content_of(root: Path) -> dict[str, tuple]:
    """Every path's mode and content (a link's target), without times: two runs made at different moments."""
    return {str(path.relative_to(root)): (stat.S_IMODE(path.lstat().st_mode), os.readlink(path) if path.is_symlink()
                                          else path.read_bytes() if path.is_file() else None)
            for path in sorted(root.rglob("*"))}


def test_install_unit_refuses_a_bare_config_and_says_how_to_make_a_bundle(tmp_path):
    result = subprocess.run(["bash", INSTALL_UNIT, ROOT / "config/unit.example.toml"], capture_output=True, text=True)
    assert result.returncode == 2 and "scripts/make-bundle" in result.stderr
