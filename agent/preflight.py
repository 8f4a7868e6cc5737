"""What `run` needs from this machine beyond a valid config: the files it will read and the folder it will write.

`check-config` reports every finding, each naming its config key, so a unit is not installed to fail at its first
start (or, worse, at its first alarm: a TLS key it cannot read, a data_dir on a read-only mount). Problems make
check-config fail; warnings (an insecure broker link, files others can read) are said and leave the exit code.
Nothing here writes outside data_dir, and into an existing data_dir only a probe file it removes at once.

`tighten` is run's side: data_dir 0700 and everything in it 0600/0700 (files left by an older version or copied in
with a loose umask), together with the process umask 077 set by the CLI for what the agent creates from then on.
"""

from __future__ import annotations

import os
import ssl
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agent.config import AgentConfig, insecure_transport
from agent.evidence.keys import KEY_FILE
from drivers.camera.replay import list_images


@dataclass(frozen=True)
class Finding:
    key: str
    message: str
    problem: bool = True  # False: a warning

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def preflight(config: AgentConfig, config_file: Path | None = None) -> list[Finding]:
    """Every problem and warning `run` would meet with this config on this machine, in config order."""
    findings = [Finding(key, why, problem=False) for key, why in insecure_transport(config.broker)]
    findings += _broker_files(config)
    findings += _camera_sources(config)
    for key, path, secret in _other_files(config):
        findings += _readable(key, path, secret)
    findings += _data_dir(config.data_dir)
    if config_file is not None:
        findings += _config_file(config, config_file)
    return findings


# ---- files read -------------------------------------------------------------------------------------------

def _readable(key: str, path: Path, secret: bool = False) -> list[Finding]:
    """The file opens for reading (as this user); a secret must not be readable by others."""
    try:
        with open(path, "rb") as stream:
            stream.read(1)
        mode = path.stat().st_mode
    except FileNotFoundError:
        return [Finding(key, f"file not found: {path}")]
    except IsADirectoryError:
        return [Finding(key, f"{path} is a directory, not a file")]
    except OSError as exc:
        return [Finding(key, f"cannot read {path}: {exc.strerror or exc}")]
    if secret and mode & 0o007:
        return [Finding(key, f"{path} is readable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 (or 640 "
                             "for the agent's group)", problem=False)]
    return []


def _broker_files(config: AgentConfig) -> list[Finding]:
    tls = config.broker.tls
    if not config.broker.use_tls or tls is None:
        return []
    findings = []
    for label, secret in (("ca_file", False), ("cert_file", False), ("key_file", True)):
        path = getattr(tls, label)
        if path is not None:
            findings += _readable(f"broker.tls.{label}", path, secret)
    return findings or _loads(tls.ca_file, tls.cert_file, tls.key_file)


def _loads(ca_file: Path | None, cert_file: Path | None, key_file: Path | None) -> list[Finding]:
    """The certificates load as paho will load them (the files can be there and still be the wrong ones)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if ca_file is not None:
            context.load_verify_locations(cafile=str(ca_file))
    except (ssl.SSLError, ValueError) as exc:
        return [Finding("broker.tls.ca_file", f"{ca_file} is not a PEM CA bundle: {exc}")]
    try:
        if cert_file is not None:
            context.load_cert_chain(str(cert_file), str(key_file))
    except (ssl.SSLError, ValueError) as exc:
        return [Finding("broker.tls.cert_file", f"{cert_file} with {key_file} is not a usable certificate and "
                                                f"key: {exc}")]
    return []


def _camera_sources(config: AgentConfig) -> list[Finding]:
    camera = config.camera
    sources = [("camera.source", camera.source)] if camera.backend == "replay" else []
    if camera.backend == "multi":
        sources = [(f"camera.sources[{i}].source", s.source) for i, s in enumerate(camera.sources)
                   if s.backend == "replay"]
    findings = []
    for key, source in sources:
        if Path(source).is_file():
            findings += _readable(key, Path(source))
        elif not list_images(source):
            findings.append(Finding(key, f"replay source not found or empty: {source} (a video file, an image "
                                         "folder or a glob matching images)"))
    return findings


def _other_files(config: AgentConfig) -> list[tuple[str, Path, bool]]:
    """(key, path, secret) of the other files a run reads: only those its enabled parts will open."""
    files = []
    if config.arc.email.enabled and config.arc.email.ca_file is not None:
        files.append(("arc.email.ca_file", config.arc.email.ca_file, False))
    if config.commissioning.enabled and config.commissioning.password_file is not None:
        files.append(("commissioning.password_file", config.commissioning.password_file, True))
    if config.gpio.backend == "simulated" and config.gpio.script is not None:
        files.append(("gpio.script", config.gpio.script, False))
    return files


# ---- data_dir ---------------------------------------------------------------------------------------------

def _data_dir(path: Path) -> list[Finding]:
    if not path.exists():
        return _creatable(path)
    if not path.is_dir():
        return [Finding("data_dir", f"{path} exists and is not a directory")]
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".check-config-"):
            pass
    except OSError as exc:
        return [Finding("data_dir", f"cannot write in {path}: {exc.strerror or exc}")]
    findings = []
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        findings.append(Finding("data_dir", f"{path} is open to others (mode {mode:04o}); run tightens it to 0700",
                                problem=False))
    findings += _unit_key(path / "keys" / KEY_FILE)
    loose = _loose_files(path)
    if loose:
        findings.append(Finding("data_dir", f"{len(loose)} file(s) readable by others, e.g. {loose[0]}; run "
                                            "tightens them to 0600", problem=False))
    return findings


def _creatable(path: Path) -> list[Finding]:
    """A data_dir that does not exist yet: its nearest existing ancestor must be a folder this user may write."""
    ancestor = path.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return [Finding("data_dir", f"cannot create {path}: {ancestor} is not a directory")]
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return [Finding("data_dir", f"cannot create {path}: {ancestor} is not writable by this user")]
    return []


def _unit_key(path: Path) -> list[Finding]:
    """The unit's signing key, if made already: readable, an Ed25519 seed, and the agent's alone."""
    if not path.exists():
        return []  # made at the first start, 0600
    findings = _readable("data_dir (unit key)", path)
    if findings:
        return findings
    if path.stat().st_size < 32:
        return [Finding("data_dir (unit key)", f"{path} is not a 32-byte Ed25519 key ({path.stat().st_size} bytes)")]
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return [Finding("data_dir (unit key)", f"{path} is readable by others (mode {mode:04o}); run tightens it "
                                               "to 0600", problem=False)]
    return []


def _loose_files(root: Path, limit: int = 10_000) -> list[Path]:
    """Files and folders under root that others (group or world) can read, at most `limit` looked at."""
    loose = []
    for count, path in enumerate(root.rglob("*")):
        if count >= limit:
            break
        if not path.is_symlink() and stat.S_IMODE(path.lstat().st_mode) & 0o077:
            loose.append(path)
    return loose


def tighten(data_dir: Path) -> int:
    """data_dir 0700, every folder in it 0700 and every file 0600; returns how many it had to change."""
    if not data_dir.is_dir():
        return 0
    changed = 0
    for path in [data_dir, *_loose_files(data_dir, limit=10**9)]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = mode & 0o700
        if mode != wanted:
            os.chmod(path, wanted)
            changed += 1
    return changed


# ---- the config file itself ----------------------------------------------------------------------------------

def _config_file(config: AgentConfig, path: Path) -> list[Finding]:
    secrets = [key for key, value in (("broker.password", config.broker.password),
                                      ("arc.email.password", config.arc.email.password),
                                      ("arc.dc09.key_hex", config.arc.dc09.key_hex)) if value]
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return []
    if secrets and mode & 0o007:
        return [Finding("(config file)", f"{path} holds {', '.join(secrets)} and is readable by others (mode "
                                         f"{mode:04o}); install it 0640 (root:pid-agent)", problem=False)]
    return []
