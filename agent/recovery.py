"""Start-up recovery: repair the outbox after an abrupt stop and send an honest end for every alarm left open.

A clip being recorded when the agent was killed is finished first (before the outbox's repair removes every
`.part` file): cut to its last whole fragment, renamed `clip.partial.mp4`, hashed, given its signed manifest,
queued, and named in the alarm's end as partial with the seconds of video it holds. Nothing half-written is named
as a finished clip.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError

from agent.evidence.manifest import SUFFIX
from agent.evidence.notary import Notary
from agent.reactions import clip_ref
from agent.storage.fragments import PARTIAL_NAME, PartialClip, finish_partial
from agent.storage.media import CLIP_CONTENT_TYPES, MediaFile, file_sha256
from agent.storage.outbox import Outbox
from agent.uplink import messages
from agent.uplink.messages import AlarmStart, ClipRef, Identity
from agent.uplink.publisher import Publisher
from common.clock import Clock
from common.errors import StorageError

log = logging.getLogger(__name__)

PART_NAME = "clip.mp4.part"  # the software recorder's clip while it is written (encoding.ClipWriter)



def recover(outbox: Outbox, publisher: Publisher, identity: Identity, clock: Clock,
            notary: Notary | None = None) -> None:
    """Reads first (the open alarms; a killed clip is cut to its last whole fragment, which needs no space, before
    the outbox's repair removes every `.part` file), then writes; on a full disk what cannot be written is logged
    and left for the next start, so the agent always gets as far as the uplink that drains the backlog.
    notary: signs the manifest of a clip finished here (None: the clip is queued without one)."""
    open_alarms = outbox.open_alarms()
    partials = {payload["event_id"]: _finish_partial(outbox.media_dir / payload["event_id"])
                for payload in open_alarms}
    for repair in outbox.recover():
        log.warning("outbox at start-up: %s", repair)
    if open_alarms:
        outbox.check_storage()  # within the bound before writing: evictions first, the reserve back if it fits
    for start_payload in open_alarms:
        event_id = start_payload["event_id"]
        log.warning("alarm %s was open when the agent last stopped; sending an incomplete end", event_id)
        try:
            clip = _clip_of(outbox, publisher, notary, event_id, partials[event_id])
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
                    "confirmed_by": [], "device_id": "", "site_ref": "", "snapshot": None}
        return AlarmStart.model_construct(**{**defaults, **known})


def _finish_partial(folder: Path) -> PartialClip | None:
    part = folder / PART_NAME
    if not part.is_file():
        return None
    try:
        partial = finish_partial(part, folder / PARTIAL_NAME)
    except StorageError as exc:
        log.error("%s", exc)
        return None
    if partial is not None:
        log.warning("clip %s was being recorded when the agent stopped: kept its first %.1f s (%d frames), "
                    "%d bytes of an unfinished fragment cut", partial.media.path, partial.duration_s,
                    partial.frames, partial.dropped_bytes)
    return partial


def _clip_file(folder: Path) -> Path | None:
    """The alarm's clip on disk: a finished one (renamed into place before the stop) or one finished here."""
    for name in [f"clip.{suffix}" for suffix in CLIP_CONTENT_TYPES] + [PARTIAL_NAME]:
        if (folder / name).is_file():
            return folder / name
    return None


def _clip_of(outbox: Outbox, publisher: Publisher, notary: Notary | None, event_id: str,
             partial: PartialClip | None) -> ClipRef | None:
    """The alarm's clip, queued with its manifest unless they already were (a kill may have come after); read
    before it is queued, as the uplink may send and delete it from then on. StorageError: it could not be queued
    (a full disk): the caller leaves the alarm open for the next start."""
    path = _clip_file(outbox.media_dir / event_id)
    if path is None:
        return None
    is_partial = path.name == PARTIAL_NAME
    content_type = "video/mp4" if is_partial else CLIP_CONTENT_TYPES[path.suffix.lstrip(".")]
    try:
        media = partial.media if partial is not None else MediaFile(path.name, path, path.stat().st_size,
                                                                      file_sha256(path), content_type)
        ref = clip_ref(media, partial=is_partial, duration_s=partial.duration_s if partial is not None else None)
        if not outbox.is_queued(path):
            publisher.media(event_id, media)
            log.warning("queued clip %s, %s", path, "partial" if is_partial else "finished just before the stop")
    except OSError as exc:
        raise StorageError(f"clip {path}: {exc.strerror or exc}") from None
    manifest = path.with_name(path.name + SUFFIX)
    try:
        if notary is not None and not outbox.is_queued(manifest):
            facts = {"partial": True, "duration_s": ref.duration_s} if is_partial else None
            publisher.media(event_id, notary.manifest(event_id, media, facts))
    except StorageError as exc:  # the clip is queued: the end still names it, its manifest is missing
        log.error("manifest of clip %s could not be written or queued: %s", path, exc)
    return ref
