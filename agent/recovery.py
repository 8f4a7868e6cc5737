"""Start-up recovery: repair the outbox after an abrupt stop and send an honest end for every alarm left open."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError

from agent.reactions import media_ref
from agent.storage.media import CLIP_CONTENT_TYPES, MediaFile
from agent.storage.outbox import Outbox
from agent.uplink import messages
from agent.uplink.messages import AlarmStart, Identity
from agent.uplink.publisher import Publisher
from common.clock import Clock
from common.errors import StorageError

log = logging.getLogger(__name__)


def recover(outbox: Outbox, publisher: Publisher, identity: Identity, clock: Clock, chunk_bytes: int) -> None:
    """Reads first (open alarms, their finished clips), then writes; on a full disk what cannot be written is
    logged and left for the next start, so the agent always gets as far as the uplink that drains the backlog."""
    for repair in outbox.recover():
        log.warning("outbox at start-up: %s", repair)
    opened = [(payload, _finished_unqueued_clip(outbox, payload["event_id"])) for payload in outbox.open_alarms()]
    if opened:
        outbox.check_storage()  # within the bound before writing: evictions first, the reserve back if it fits
    for start_payload, clip_path in opened:
        event_id = start_payload["event_id"]
        log.warning("alarm %s was open when the agent last stopped; sending an incomplete end", event_id)
        try:
            clip = media_ref(_queue_clip(outbox, event_id, clip_path, chunk_bytes))
        except StorageError as exc:
            log.error("alarm %s: its clip cannot be queued (%s); the alarm stays open for the next start",
                      event_id, exc)
            continue
        start = _start_of(start_payload)
        publisher.event(lambda seq, start=start, clip=clip: messages.incomplete_end(
            identity, seq, start, clock.wall(), clip))
        try:
            outbox.close_alarm(event_id)
        except StorageError as exc:
            log.error("alarm %s: journal not closed (%s); the next start repeats its end", event_id, exc)


def _start_of(payload: dict) -> AlarmStart:
    """The stored start of an open alarm; one stored by an older agent is read for what it still says."""
    try:
        return AlarmStart.model_validate(payload)
    except ValidationError:
        fields = set(AlarmStart.model_fields)
        known = {key: value for key, value in payload.items() if key in fields}
        defaults = {"seq": 0, "ts": "", "frame": None, "score": 0.0, "boxes": [], "image_size": [], "zone": None,
                    "confirmed_by": [], "device_id": "", "site_ref": ""}
        return AlarmStart.model_construct(**{**defaults, **known})


def _finished_unqueued_clip(outbox: Outbox, event_id: str) -> Path | None:
    """A clip finished (fsynced, renamed) but not yet queued when the agent was killed."""
    for path in sorted((outbox.media_dir / event_id).glob("clip.*")):
        if path.suffix != ".part" and not outbox.is_queued(path):
            return path
    return None


def _queue_clip(outbox: Outbox, event_id: str, path: Path | None, chunk_bytes: int) -> MediaFile | None:
    if path is None:
        return None
    content_type = CLIP_CONTENT_TYPES.get(path.suffix.lstrip("."), "application/octet-stream")
    manifest = outbox.put_media(event_id, path.name, path, content_type, chunk_bytes)
    log.warning("queued clip %s, finished just before the agent stopped", path)
    return MediaFile(path.name, path, manifest["total_bytes"], manifest["sha256"], manifest["content_type"])
