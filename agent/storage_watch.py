"""Storage, watched from the supervisor's tick: a full disk or outbox is a `storage` fault (and a `restore` once it
clears), every drop is named in an `evicted` event and in the audit log, and media past retention are deleted.

All on the injected clock: the storage check runs each tick, retention every RETENTION_EVERY_S of monotonic time.
"""

from __future__ import annotations

import logging

from agent.evidence.notary import Notary
from agent.reactions import Reactions
from agent.storage.bound import StorageState
from agent.storage.outbox import Outbox
from agent.uplink import messages
from common.clock import Clock
from common.errors import StorageError

log = logging.getLogger(__name__)

RETENTION_EVERY_S = 600.0
ITEMS_PER_EVENT = 50  # an evicted event stays a few kB; more drops go out in the next one
EVENTS_PER_TICK = 4   # and a pass sends a few: a report that itself makes room cannot run away


class StorageWatch:
    def __init__(self, outbox: Outbox, reactions: Reactions, notary: Notary, clock: Clock,
                 retention_days: float) -> None:
        self.outbox, self.reactions, self.notary, self.clock = outbox, reactions, notary, clock
        self.retention_s = retention_days * 86400.0
        self.problem: str | None = outbox.storage_problem  # a fault raised before a restart is still in force
        self._since = clock.monotonic()
        self._next_retention: float | None = None

    def tick(self) -> None:
        self.expire()
        self.check()
        self.report_evictions()

    def check(self) -> StorageState:
        """Raise a `storage` fault when storage gets into trouble (or its reason changes), clear it after."""
        state = self.outbox.check_storage()
        if state.problem == self.problem:
            return state
        wall = self.clock.wall()
        if state.problem is not None:
            log.error("storage fault (%s): %s", state.problem, state.detail)
            if self.problem is None:
                self._since = self.clock.monotonic()
            use = state.use
            self.reactions.publish(lambda env: messages.StorageFault(
                **env, message=state.detail, alarm_event_id=None, reason=state.problem, used_bytes=use.total,
                max_bytes=state.max_bytes, free_bytes=use.fs_free), wall, None)
        else:
            down_s = self.clock.monotonic() - self._since
            log.warning("storage fault (%s) cleared after %.0f s: %s", self.problem, down_s, state.detail)
            reason = self.problem
            self.reactions.publish(lambda env: messages.Restore(
                **env, source="storage", reason=reason, down_s=round(down_s, 1)), wall, None)
        self.problem = state.problem
        return state

    def report_evictions(self) -> int:
        """Say what was dropped, in the audit log and an `evicted` event; the record is kept until the event
        is stored, so a full disk delays the report and never loses it. Returns the items reported."""
        reported = 0
        for _ in range(EVENTS_PER_TICK):
            rows = self.outbox.unreported_evictions(ITEMS_PER_EVENT)
            if not rows:
                break
            items = [messages.EvictedItem(**item) for _, item in rows]
            try:
                self.reactions.publish_strict(lambda env, items=items: messages.Evicted(**env, items=items),
                                              self.clock.wall())
            except StorageError as exc:
                log.error("evicted report delayed: %s", exc)
                return reported
            self.notary.record("evicted", {"items": [item.wire() for item in items]})
            self.outbox.evictions_reported([row_id for row_id, _ in rows])
            reported += len(rows)
        return reported

    def expire(self) -> list[dict]:
        """Every RETENTION_EVERY_S: delete media older than the retention period (held media stay)."""
        now = self.clock.monotonic()
        if self._next_retention is not None and now < self._next_retention:
            return []
        self._next_retention = now + RETENTION_EVERY_S
        deleted = self.outbox.expire_media(self.retention_s)
        for item in deleted:
            self.notary.record("media_deleted", item)
        if deleted:
            log.warning("retention: deleted %d media file(s) older than %.1f days", len(deleted),
                        self.retention_s / 86400)
        return deleted
