"""Everything the agent says upstream goes through here: one sequence, one outbox, one --events file.

The seq number and the outbox row are taken under one lock, so the order of `seq` is the order of sending even
when the supervisor thread (heartbeats, camera faults) and the frame loop publish at the same moment.

With the unit's key, every event, command result and heartbeat is signed here, where its wire payload is made:
`key` (the key id) and `sig` (Ed25519, base64) over the canonical JSON of the payload without `sig`, so a station
holding the unit's public key can tell the unit's own messages from anything else published on its topics
(`signed` also signs the status messages the uplink makes itself).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from typing import IO, Callable

from agent.evidence.audit import canonical
from agent.evidence.keys import UnitKey
from agent.evidence.notary import Notary
from agent.storage.media import MediaFile
from agent.storage.outbox import Outbox
from agent.uplink.messages import CommandResult, Event, Heartbeat
from common.errors import StorageError

HISTORY = 10_000

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, outbox: Outbox, chunk_bytes: int, events_out: IO[str] | None = None,
                 notify: Callable[[], None] | None = None, notary: Notary | None = None,
                 key: UnitKey | None = None) -> None:
        self.outbox = outbox
        self.key = key  # signs events and command results (None: sent unsigned)
        self.notary = notary  # every event and command result also goes into the signed audit log
        self.chunk_bytes = chunk_bytes
        self.events_out = events_out
        self.notify = notify or (lambda: None)
        # recent history for replays, tests and the CLI summary; bounded, as a unit runs for weeks
        self.published: collections.deque[dict] = collections.deque(maxlen=HISTORY)
        self._lock = threading.Lock()

    def event(self, build: Callable[[int], Event], strict: bool = False) -> dict:
        """Publish the event that build(seq) returns, on the `event` topic; returns its wire payload.

        An event the outbox cannot store (a full disk with nothing left to evict) does not stop the unit: it is
        logged, still audited and written to --events, and the outbox's storage check reports the full disk.
        strict=True raises the StorageError instead (for a caller that retries, like the evicted report)."""
        with self._lock:
            payload = self.signed(build(self.outbox.next_seq()).wire())
            try:
                self.outbox.put_message("event", payload, kind="event")
            except StorageError as exc:
                if strict:
                    raise
                log.error("event %s (%s) not stored: %s", payload.get("event_id"), payload.get("kind"), exc)
            if self.notary is not None:
                self.notary.record("event", payload)
            self.published.append(payload)
            if self.events_out is not None:
                self.events_out.write(json.dumps(payload, sort_keys=True) + "\n")
                self.events_out.flush()
        self.notify()
        return payload

    def media(self, event_id: str, media: MediaFile) -> None:
        with self._lock:
            self.outbox.put_media(event_id, media.name, media.path, media.content_type, self.chunk_bytes,
                                  sha256=media.sha256)
        self.notify()

    def command_result(self, result: CommandResult) -> None:
        with self._lock:
            payload = self.signed(result.wire())
            # a result is, like a heartbeat, the first to go from a full outbox: it never evicts alarms or media
            try:
                self.outbox.put_message("cmd/result", payload, kind="heartbeat")
            except StorageError as exc:
                log.error("command result %s not stored: %s", payload.get("id"), exc)
            if self.notary is not None:
                self.notary.record("command_result", payload)
        self.notify()

    def signed(self, payload: dict) -> dict:
        return signed(self.key, payload)

    def heartbeat(self, beat: Heartbeat) -> None:
        with self._lock:
            try:
                self.outbox.put_message("heartbeat", self.signed(beat.wire()), kind="heartbeat")
            except StorageError as exc:
                log.error("heartbeat not stored: %s", exc)
        self.notify()


def signed(key: UnitKey | None, payload: dict) -> dict:
    """payload with the unit's key id and its signature over everything else (unchanged without a key)."""
    if key is None:
        return payload
    body = {name: value for name, value in payload.items() if name not in ("key", "sig")}
    body["key"] = key.id
    return {**body, "sig": key.sign(canonical(body))}
