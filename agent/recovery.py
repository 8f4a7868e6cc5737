"""Start-up recovery: repair the outbox after an abrupt stop and send an honest end for every alarm left open."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from agent.reactions import media_ref
from agent.storage.media import CLIP_CONTENT_TYPES, MediaFile
from agent.storage.outbox import Outbox
from agent.uplink import messages
from agent.uplink.messages import AlarmStart, Identity
from agent.uplink.publisher import Publisher
from common.clock import Clock

log = logging.getLogger(__name__)


def recover(outbox: Outbox, publisher: Publisher, identity: Identity, clock: Clock, chunk_bytes: int) -> None:
    for repair in outbox.recover():
        log.warning("outbox at start-up: %s", repair)
    for start_payload in outbox.open_alarms():
        event_id = start_payload["event_id"]
        log.warning("alarm %s was open when the agent last stopped; sending an incomplete end", event_id)
        clip = media_ref(_finished_unqueued_clip(outbox, event_id, chunk_bytes))
        start = _start_of(start_payload)
        publisher.event(lambda seq, start=start, clip=clip: messages.incomplete_end(
            identity, seq, start, clock.wall(), clip))
        outbox.close_alarm(event_id)


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


def _finished_unqueued_clip(outbox: Outbox, event_id: str, chunk_bytes: int) -> MediaFile | None:
    """A clip finished (fsynced, renamed) but not yet queued when the agent was killed: queue it now."""
    for path in sorted((outbox.media_dir / event_id).glob("clip.*")):
        if path.suffix == ".part" or outbox.is_queued(path):
            continue
        content_type = CLIP_CONTENT_TYPES.get(path.suffix.lstrip("."), "application/octet-stream")
        manifest = outbox.put_media(event_id, path.name, path, content_type, chunk_bytes)
        log.warning("queued clip %s, finished just before the agent stopped", path)
        return MediaFile(path.name, path, manifest["total_bytes"], manifest["sha256"], manifest["content_type"])
    return None
