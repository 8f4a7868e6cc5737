"""Evidence manifests: written beside each clip and snapshot when it is finished, signed with the unit's key.

`<name>.manifest.json` holds what a court needs to trust the file: its size and SHA-256, the SHA-256 of each
256 KiB block (so a check can say which bytes changed), the unit, site, alarm, time source, software version,
config hash, and an Ed25519 signature over all of it (canonical JSON, as in the audit log). It travels with the
media over MQTT and `pid-station verify` checks a file against it offline.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from agent.evidence.audit import canonical
from agent.evidence.keys import UnitKey
from common.errors import StorageError

BLOCK_BYTES = 256 * 1024
SUFFIX = ".manifest.json"
CONTENT_TYPE = "application/vnd.pid-agent.manifest+json"
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")  # present once systemd-timesyncd has synchronised


def block_hashes(path: Path, block_bytes: int = BLOCK_BYTES) -> list[str]:
    hashes = []
    with path.open("rb") as stream:
        while block := stream.read(block_bytes):
            hashes.append(hashlib.sha256(block).hexdigest())
    return hashes


def clock_synchronised() -> bool | None:
    """True when systemd-timesyncd says the clock is synchronised; None where that cannot be told."""
    return True if TIMESYNC_FLAG.exists() else None


def write_manifest(media_path: Path, *, sha256: str, size: int, content_type: str, facts: dict,
                   key: UnitKey) -> Path:
    """Write and fsync the signed manifest of a finished media file; returns its path.

    facts: device_id, site_ref, event_id, created, software_version, config_sha256 and the like."""
    body = {"format": 1, "file": media_path.name, "bytes": size, "sha256": sha256, "content_type": content_type,
            "block_bytes": BLOCK_BYTES, "blocks": block_hashes(media_path), "time_source": "system clock",
            "clock_synchronised": clock_synchronised(), **facts,
            "key": key.id, "public_key": key.public_b64()}
    body["sig"] = key.sign(canonical(body))
    path = media_path.with_name(media_path.name + SUFFIX)
    part = path.with_name(path.name + ".part")
    try:
        descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(body, stream, sort_keys=True, indent=1)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(part, path)
    except OSError as exc:
        raise StorageError(f"manifest {path}: {exc.strerror or exc}") from None
    return path
