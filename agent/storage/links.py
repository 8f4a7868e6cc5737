"""Per-link delivery: each non-MQTT link (an ARC receiver, the video-alarm mailer) gets the rows it registered for,
and a row is freed once the uplink and every link holding it have it. Mixed into Outbox."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LinkMessage:
    """A row as a non-MQTT link sees it: the decoded event or media manifest, and the media file for a manifest."""

    id: int
    kind: str                 # event | manifest
    topic: str
    payload: dict
    media_path: Path | None


@dataclass(frozen=True)
class LinkSpec:
    """Which rows a link wants: `event` rows whose payload kind is listed, and (media=True) each media manifest."""

    name: str
    event_kinds: frozenset[str]
    media: bool


class Links:
    def register_link(self, name: str, event_kinds: tuple[str, ...] | frozenset[str] = (), media: bool = False) -> None:
        """Declare a link: from now on every stored row it wants waits for it too. Idempotent (call at start-up);
        rows stored before the first registration are not given to it. Nothing is written when the link is
        already registered like this (a restart on a full disk must get as far as the uplink)."""
        if not name:
            raise ValueError("a link needs a name")
        spec = LinkSpec(name, frozenset(event_kinds), bool(media))
        with self._lock:
            if self._links.get(name) != spec:
                with self._tx():
                    self._db.execute("INSERT OR REPLACE INTO links (name, event_kinds, media) VALUES (?, ?, ?)",
                                     (name, json.dumps(sorted(spec.event_kinds)), int(spec.media)))
            self._links[name] = spec

    def unregister_link(self, name: str) -> None:
        """Forget a link (disabled in config): release everything it still held."""
        with self._lock:
            ids = [row[0] for row in self._db.execute(
                "SELECT message_id FROM link_pending WHERE link = ?", (name,)).fetchall()]
            for message_id in ids:
                self.link_ack(name, message_id)
            with self._tx():
                self._db.execute("DELETE FROM links WHERE name = ?", (name,))
            self._links.pop(name, None)

    def link_pending(self, name: str, limit: int, after_id: int = 0) -> list[LinkMessage]:
        """The oldest rows this link has not acknowledged, in id order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT m.id, m.kind, m.topic, m.payload, d.path FROM link_pending p "
                "JOIN messages m ON m.id = p.message_id LEFT JOIN media d ON d.id = m.media_id "
                "WHERE p.link = ? AND p.message_id > ? ORDER BY p.message_id LIMIT ?",
                (name, after_id, limit)).fetchall()
        return [LinkMessage(row_id, kind, topic, json.loads(payload), Path(path) if path else None)
                for row_id, kind, topic, payload, path in rows]

    def link_ack(self, name: str, message_id: int) -> None:
        """This link delivered the row: free it if the uplink and every other link have it as well."""
        with self._lock:
            with self._tx():
                self._db.execute("DELETE FROM link_pending WHERE link = ? AND message_id = ?", (name, message_id))
                if self._db.execute("SELECT 1 FROM link_pending WHERE message_id = ? LIMIT 1",
                                    (message_id,)).fetchone():
                    return
                if not self._db.execute("SELECT 1 FROM uplink_done WHERE message_id = ?",
                                        (message_id,)).fetchone():
                    return  # the MQTT uplink has not got it yet
                freed = self._forget(message_id)
            if freed is not None:
                self._unlink(freed)

    def link_depth(self, name: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM link_pending WHERE link = ?", (name,)).fetchone()[0]

    def _load_links(self) -> dict[str, LinkSpec]:
        rows = self._db.execute("SELECT name, event_kinds, media FROM links").fetchall()
        return {name: LinkSpec(name, frozenset(json.loads(kinds)), bool(media)) for name, kinds, media in rows}

    def _hold(self, message_id: int, specs: list[LinkSpec]) -> None:
        """Inside the put's transaction: the row waits for each of these links."""
        self._db.executemany("INSERT INTO link_pending (link, message_id) VALUES (?, ?)",
                             [(spec.name, message_id) for spec in specs])

    def _drop_link_rows(self) -> None:
        """Inside a transaction, after rows were evicted or dropped: forget link bookkeeping of vanished rows."""
        self._db.execute("DELETE FROM link_pending WHERE message_id NOT IN (SELECT id FROM messages)")
        self._db.execute("DELETE FROM uplink_done WHERE message_id NOT IN (SELECT id FROM messages)")
