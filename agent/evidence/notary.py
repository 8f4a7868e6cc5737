"""The notary: what the unit vouches for, in one place — a signed manifest beside each finished media file, and an
audit entry for every event, command result and start or stop of the agent."""

from __future__ import annotations

import hashlib
import logging

from agent import __version__
from agent.evidence.audit import AuditLog, Head
from agent.evidence.keys import UnitKey
from agent.evidence.manifest import CONTENT_TYPE, write_manifest
from agent.storage.media import MediaFile, file_sha256
from agent.uplink.messages import Identity
from common.clock import Clock, iso_utc
from common.errors import StorageError

log = logging.getLogger(__name__)


def config_sha256(config_json: str) -> str:
    return hashlib.sha256(config_json.encode("utf-8")).hexdigest()


class Notary:
    def __init__(self, key: UnitKey, audit: AuditLog, identity: Identity, config_hash: str, clock: Clock) -> None:
        self.key = key
        self.audit = audit
        self.identity = identity
        self.config_hash = config_hash
        self.clock = clock

    @property
    def head(self) -> Head:
        return self.audit.head

    def started(self) -> None:
        """The first entry of each run names the key that signs it, the software and the config it runs."""
        self.record("start", {**self.identity.model_dump(), "version": __version__,
                              "config_sha256": self.config_hash, "public_key": self.key.public_b64()})

    def stopped(self, reason: str) -> None:
        self.record("stop", {"reason": reason})

    def record(self, kind: str, data: dict) -> None:
        """One audit entry. One the disk refuses is counted by the log (a `gap` entry follows) and logged: the
        unit goes on guarding the site; the storage check reports the full disk."""
        try:
            self.audit.append(kind, data)
        except StorageError as exc:
            log.error("audit entry %r not written: %s", kind, exc)

    def manifest(self, event_id: str, media: MediaFile, facts: dict | None = None) -> MediaFile:
        """Write the signed manifest of a finished media file; returns it as a media file to queue beside it.
        facts: more for the manifest to vouch for (a partial clip's `partial` and `duration_s`)."""
        path = write_manifest(media.path, sha256=media.sha256, size=media.size, content_type=media.content_type,
                              facts={**self.identity.model_dump(), "event_id": event_id,
                                     "created": iso_utc(self.clock.wall()), "software_version": __version__,
                                     "config_sha256": self.config_hash, **(facts or {})}, key=self.key)
        return MediaFile(path.name, path, path.stat().st_size, file_sha256(path), CONTENT_TYPE)
