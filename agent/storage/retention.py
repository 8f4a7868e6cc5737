"""Retention: media older than the retention period are deleted (and each deletion recorded like an eviction,
with reason "retention"), except the media of an event put on hold by a signed command. Mixed into Outbox.

Queued media are aged from when they were queued (the injected clock); files on disk the outbox does not queue
(left by an older agent or a crash) from their modification time.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agent.storage.media import file_sha256
from agent.storage.media_store import check_topic_part

log = logging.getLogger(__name__)


class Retention:
    def hold(self, event_id: str, reference: str) -> bool:
        """Keep this event's media past the retention period; False if it was already on hold."""
        check_topic_part("event_id", event_id)
        with self._lock, self._tx():
            cur = self._db.execute("INSERT OR IGNORE INTO holds (event_id, held, reference) VALUES (?, ?, ?)",
                                   (event_id, self._clock.wall(), reference))
            return cur.rowcount == 1

    def release(self, event_id: str) -> bool:
        """End a hold; False if the event was not on hold."""
        with self._lock, self._tx():
            return self._db.execute("DELETE FROM holds WHERE event_id = ?", (event_id,)).rowcount == 1

    def holds(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT event_id FROM holds")}

    def expire_media(self, max_age_s: float) -> list[dict]:
        """Delete media older than max_age_s (not on hold); returns one item per file deleted."""
        now = self._clock.wall()
        with self._lock:
            held = self.holds()
            rows = self._db.execute("SELECT id, event_id FROM media WHERE created < ? ORDER BY id",
                                    (now - max_age_s,)).fetchall()
            deleted = []
            for media_id, event_id in rows:
                if event_id in held:
                    continue
                item = self._db.execute("SELECT name, sha256, total_bytes FROM media WHERE id = ?",
                                        (media_id,)).fetchone()
                self._drop_media(media_id, "retention")
                deleted.append({"what": "media", "name": item[0], "event_id": event_id, "sha256": item[1],
                                "bytes": item[2], "reason": "retention"})
            queued = {Path(row[0]) for row in self._db.execute("SELECT path FROM media")}
            for path in sorted(p for p in self._media_root.rglob("*") if p.is_file() and p not in queued):
                if path.parent.name in held or path.suffix == ".part" or path.stat().st_mtime >= now - max_age_s:
                    continue
                deleted.append(self._expire_orphan(path))
            self._others_at = None  # walk media_dir again at the next measure
        return deleted

    def _expire_orphan(self, path: Path) -> dict:
        item = {"what": "media", "name": path.name, "event_id": path.parent.name, "sha256": file_sha256(path),
                "bytes": path.stat().st_size, "reason": "retention"}
        self._unlink(path)
        with self._tx():
            self._record_eviction(item)
        log.warning("outbox: deleted unqueued media %s (older than the retention period)", path)
        return item
