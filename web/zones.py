"""Zones saved from the page: validated by the agent's own parse_config, written atomically to the unit's config
TOML, and put into the running agent between frames.

Writing goes through tomli-w, so comments in the file are not kept (the values are).
"""

from __future__ import annotations

import logging
import os
import tempfile
import tomllib
from pathlib import Path

import tomli_w

from agent.config import AgentConfig, parse_config
from agent.privacy import PrivacyFilter
from common.errors import ConfigError

log = logging.getLogger(__name__)


class ZonesRefused(ValueError):
    """The agent's validation refused the zones; `problems` are [{"field": "detection.zones.0.polygon",
    "message": "..."}], one per bad key."""

    def __init__(self, problems: list[dict]) -> None:
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))
        self.problems = problems


def _problems(error: ConfigError) -> list[dict]:
    """parse_config's message is one 'key: message' line per bad key after a heading line."""
    problems = []
    for line in str(error).splitlines()[1:]:
        field, _, message = line.strip().partition(": ")
        message = message.removeprefix("Value error, ")  # pydantic's word for a validator's own message
        problems.append({"field": field, "message": message or field})
    return problems or [{"field": "detection.zones", "message": str(error)}]


def _clean(zone: dict) -> dict:
    """A zone from the page as TOML can hold it (no nulls: an absent key takes its default)."""
    return {key: value for key, value in zone.items() if value is not None}


def save_zones(config_path: Path, zones: list[dict]) -> AgentConfig:
    """Validate the config file with these zones, write it atomically, and return the new config.
    Raises ZonesRefused when the agent's own validation says no (the file is then untouched)."""
    if not isinstance(zones, list) or not all(isinstance(zone, dict) for zone in zones):
        raise ZonesRefused([{"field": "detection.zones", "message": "expected a list of zones"}])
    data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    data.setdefault("detection", {})["zones"] = [_clean(zone) for zone in zones]
    try:
        config = parse_config(data, origin=str(config_path))
    except ConfigError as exc:
        raise ZonesRefused(_problems(exc)) from None
    _write_atomically(config_path, tomli_w.dumps(data))
    log.warning("audit: commissioning page saved %d zone(s) to %s: %s", len(zones), config_path,
                ", ".join(f"{zone['name']} ({zone.get('kind', 'detect')})" for zone in data["detection"]["zones"]))
    return config


def _write_atomically(path: Path, text: str) -> None:
    """A power cut leaves the old file or the new one, never half of one."""
    mode = path.stat().st_mode & 0o777
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def applies_live(agent, config: AgentConfig) -> bool:
    """Whether new zones can go into the running agent: not when privacy masks change on a camera that records
    in its own hardware encoder (its pre-roll was encoded unblanked), that needs a restart."""
    if agent is None:
        return False
    privacy_changed = PrivacyFilter(config.detection.zones).active != agent.privacy.active
    return not (privacy_changed and agent.camera.hardware_preroll)


def apply_live(agent, config: AgentConfig) -> None:
    """Between frames (the frame loop calls this): new zones for detection and the privacy blanking. The new
    detector learns the background again over its first frames."""
    if not applies_live(agent, config):
        return
    agent.config = config
    agent.analyzer.set_detection(config.detection)
    agent.privacy = PrivacyFilter(config.detection.zones)
    agent.recorder.allow_hardware = not agent.privacy.active
    log.info("commissioning: %d zone(s) applied to the running agent", len(config.detection.zones))
