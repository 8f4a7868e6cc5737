"""`check-config` checks what `run` would meet on this machine (files it reads, the data_dir it writes), naming the
key of each problem; insecure broker links are said loudly and can be forbidden; run keeps data_dir private."""

from __future__ import annotations

import logging
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.cli import main
from agent.config import parse_config
from agent.preflight import preflight, tighten
from agent.storage.outbox import Outbox
from agent.uplink.client import Uplink
from common.clock import SystemClock
from common.errors import ConfigError
from tests.net import free_port
from tests.test_tls import openssl

ROOT = Path(__file__).resolve().parents[1]


def check(tmp_path: Path, text: str, capsys) -> tuple[int, str]:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o640)
    code = main(["check-config", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=CA", cwd=folder)
    openssl("req", "-x509", *ec, "-keyout", "unit.key", "-out", "unit.pem", "-days", "2", "-subj", "/CN=pid-1",
            cwd=folder)
    openssl("req", "-x509", *ec, "-keyout", "other.key", "-out", "other.pem", "-days", "2", "-subj", "/CN=x",
            cwd=folder)
    for key in folder.glob("*.key"):
        key.chmod(0o600)
    return folder


def tls_config(tmp_path: Path, certs: Path, **files) -> str:
    paths = {"ca_file": certs / "ca.pem", "cert_file": certs / "unit.pem", "key_file": certs / "unit.key", **files}
    lines = "\n".join(f"{name} = '{path}'" for name, path in paths.items())
    return f"data_dir = '{tmp_path / 'data'}'\n[broker]\nurl = 'mqtts://127.0.0.1:8883'\n[broker.tls]\n{lines}\n"


def test_a_unit_ready_to_run_is_ok(tmp_path, certs, capsys):
    code, output = check(tmp_path, tls_config(tmp_path, certs), capsys)
    assert code == 0, output
    assert "OK" in output and "files and data_dir checked" in output and "warning" not in output
    assert not (tmp_path / "data").exists()  # checked as creatable, not created


def test_each_missing_or_wrong_file_is_named_by_its_key(tmp_path, certs, capsys):
    text = tls_config(tmp_path, certs, ca_file=tmp_path / "no-ca.pem", key_file=tmp_path)
    text += "[camera]\nbackend = 'replay'\nsource = '" + str(tmp_path / "gone.mp4") + "'\n"
    code, output = check(tmp_path, text, capsys)
    assert code == 2
    assert f"broker.tls.ca_file: file not found: {tmp_path / 'no-ca.pem'}" in output
    assert f"broker.tls.key_file: {tmp_path} is a directory, not a file" in output
    assert "camera.source: replay source not found or empty" in output
    assert "3 problem(s)" in output


def test_a_certificate_and_a_key_that_do_not_belong_together(tmp_path, certs, capsys):
    code, output = check(tmp_path, tls_config(tmp_path, certs, key_file=certs / "other.key"), capsys)
    assert code == 2 and "broker.tls.cert_file:" in output and "not a usable certificate and key" in output
    code, output = check(tmp_path, tls_config(tmp_path, certs, ca_file=certs / "unit.key"), capsys)
    assert code == 2 and "broker.tls.ca_file:" in output and "not a PEM CA bundle" in output


def test_a_data_dir_that_cannot_be_made_or_written(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, output = check(tmp_path, f"data_dir = '{blocker / 'data'}'\n", capsys)
    assert code == 2 and f"data_dir: cannot create {blocker / 'data'}: {blocker} is not a directory" in output
    code, output = check(tmp_path, f"data_dir = '{blocker}'\n", capsys)
    assert code == 2 and f"data_dir: {blocker} exists and is not a directory" in output


def test_loose_modes_are_warned_and_run_tightens_them(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "keys").mkdir(parents=True)
    for folder in (data, data / "keys"):
        folder.chmod(0o755)  # whatever this process's umask
    (data / "keys" / "unit.ed25519").write_bytes(b"k" * 32)
    (data / "keys" / "unit.ed25519").chmod(0o644)
    (data / "outbox.sqlite").write_bytes(b"")
    (data / "outbox.sqlite").chmod(0o644)
    code, output = check(tmp_path, f"data_dir = '{data}'\n", capsys)
    assert code == 0, output  # warnings: run fixes these itself
    assert "data_dir: " in output and "mode 0755); run tightens it to 0700" in output
    assert "data_dir (unit key): " in output and "readable by others (mode 0644)" in output
    assert tighten(data) == 4  # data_dir, keys/, the key, the outbox
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in [data, *data.rglob("*")]}
    assert modes == {"data": 0o700, "keys": 0o700, "unit.ed25519": 0o600, "outbox.sqlite": 0o600}
    assert not [f for f in preflight(parse_config({"data_dir": str(data)})) if f.key.startswith("data_dir")]
    (data / "keys" / "unit.ed25519").write_bytes(b"short")
    code, output = check(tmp_path, f"data_dir = '{data}'\n", capsys)
    assert code == 2 and "not a 32-byte Ed25519 key (5 bytes)" in output


def test_schema_only_skips_this_machines_files(tmp_path, capsys):
    path = tmp_path / "agent.toml"
    path.write_text("[broker.tls]\nca_file = '/nowhere/ca.pem'\n")
    assert main(["check-config", "--schema-only", str(path)]) == 0
    assert main(["check-config", str(path)]) == 2
    assert "broker.tls.ca_file: file not found: /nowhere/ca.pem" in capsys.readouterr().err


# ---- insecure transport ---------------------------------------------------------------------------------

@pytest.mark.parametrize("broker, key", [
    ({"url": "mqtt://broker.example", "username": "u", "password": "p"}, "broker.password"),
    ({"url": "mqtts://broker.example", "tls": {"insecure": True}}, "broker.tls.insecure"),
])
def test_insecure_transport_is_warned_and_can_be_forbidden(tmp_path, capsys, broker, key):
    config = parse_config({"data_dir": str(tmp_path / "d"), "broker": broker})  # allowed by default ...
    findings = [f for f in preflight(config) if f.key == key]
    assert findings and not findings[0].problem  # ... as a warning
    with pytest.raises(ConfigError) as refused:
        parse_config({"broker": broker, "security": {"allow_insecure_transport": False}})
    assert "security.allow_insecure_transport is false" in str(refused.value) and key in str(refused.value)
    tls = "[broker.tls]\ninsecure = true\n" if "tls" in broker else ""
    text = (f"[broker]\nurl = '{broker['url']}'\n" + ("password = 'p'\n" if "password" in broker else "") + tls
            + "[security]\nallow_insecure_transport = false\n")
    code, output = check(tmp_path, text, capsys)  # and the command line says so, naming both keys
    assert code == 2 and "security.allow_insecure_transport is false" in output and key in output


def test_tls_with_a_password_is_not_insecure(tmp_path):
    config = parse_config({"broker": {"url": "mqtts://b.example", "password": "p"},
                           "security": {"allow_insecure_transport": False}})
    assert not [f for f in preflight(config) if f.key.startswith("broker")]


def test_the_uplink_warns_loudly_at_start_up(tmp_path, caplog):
    config = parse_config({"broker": {"url": f"mqtt://127.0.0.1:{free_port()}", "username": "u",
                                      "password": "p"}})
    outbox = Outbox(tmp_path / "d", 1 << 24, SystemClock())
    uplink = Uplink(config.broker, "pids/x", "x", outbox, SystemClock(), "1.0")
    with caplog.at_level(logging.WARNING, logger="agent.uplink.client"):
        uplink.start()
        uplink.stop(timeout=1.0)
    outbox.close()
    insecure = [r.getMessage() for r in caplog.records if "INSECURE" in r.getMessage()]
    assert insecure and "broker.password" in insecure[0] and "security.allow_insecure_transport" in insecure[0]


def test_a_config_holding_a_password_readable_by_others_is_warned(tmp_path, capsys):
    path = tmp_path / "agent.toml"
    path.write_text(f"data_dir = '{tmp_path / 'd'}'\n[broker]\nurl = 'mqtts://b.example'\npassword = 'p'\n")
    path.chmod(0o644)
    assert main(["check-config", str(path)]) == 0
    assert "holds broker.password and is readable by others (mode 0644)" in capsys.readouterr().err


# ---- run ----------------------------------------------------------------------------------------------

def test_what_a_run_writes_is_private(tmp_path):
    images = tmp_path / "frames"
    images.mkdir()
    for index in range(3):
        cv2.imwrite(str(images / f"{index:03d}.png"), np.full((120, 160, 3), 40 * index, np.uint8))
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "left-by-an-old-version.txt").write_text("x")
    (data / "left-by-an-old-version.txt").chmod(0o644)
    result = subprocess.run([sys.executable, "-m", "agent", "replay", str(images), "--fast", "--offline",
                             "--data-dir", str(data)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    modes = {str(path.relative_to(data)): stat.S_IMODE(path.stat().st_mode) for path in data.rglob("*")}
    assert "outbox.sqlite" in modes and "keys/unit.ed25519" in modes and "commands.sqlite" in modes
    loose = {name: f"{mode:04o}" for name, mode in modes.items() if mode & 0o077}
    assert not loose and stat.S_IMODE(data.stat().st_mode) == 0o700
