"""The outbox's message rows: the event sequence, JSON messages, the uplink's pending/ack, counters and the
journal of open alarms. Mixed into Outbox (agent/storage/outbox.py), which owns the connection and the lock."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from common.errors import StorageError, StorageFull

log = logging.getLogger(__name__)

#: event kinds kept like alarms (and storage faults): evicted last, after every other event, only by each other
KEEP_KINDS = frozenset({"intrusion", "evicted"})


@dataclass(frozen=True)
class OutboundMessage:
    id: int
    topic: str        # relative to the topic root, e.g. "event" or "media/<event_id>/clip.mp4/0"
    payload: bytes
    qos: int
    retain: bool


class MessageQueue:
    """Messages and their acknowledgement (the uplink's side of the outbox)."""

    # ---- sequence and plain messages -------------------------------------------------------------------------

    def next_seq(self) -> int:
        """The next event seq. On a full disk it still advances (in memory) and is stored with the next write
        that succeeds, so events go on being numbered in order."""
        with self._lock:
            self._seq += 1
            try:
                with self._tx():
                    self._db.execute("UPDATE meta SET value = MAX(value, ?) WHERE key = 'seq'", (self._seq,))
            except StorageFull as exc:
                self._note_full(exc)
            return self._seq

    def put_message(self, topic: str, payload: dict, kind: Literal["event", "heartbeat"], qos: int = 1) -> int:
        """Queue a JSON message; returns its row id, or 0 if a heartbeat was dropped because the outbox is full
        of alarms and media (a heartbeat never pushes those out)."""
        if kind not in ("event", "heartbeat"):
            raise ValueError(f"message kind must be 'event' or 'heartbeat', got {kind!r}")
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1, got {qos!r}")
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        keep = kind == "event" and (payload.get("kind") in KEEP_KINDS or (
            payload.get("kind") == "fault" and payload.get("source") == "storage"))  # a station must hear of it
        allowed = ("heartbeat",) if kind == "heartbeat" else ("heartbeat", "media", "event")
        what = f"{kind} on {topic}"
        with self._lock:
            if not self._make_room(len(body), allowed, what, keep):
                if kind == "heartbeat":
                    log.warning("outbox full of alarms/media: heartbeat dropped (%d bytes)", len(body))
                    return 0
                full = StorageFull(f"{kind} message of {len(body)} bytes does not fit in the outbox "
                                   f"(max_bytes={self.max_bytes}) at {self.db_path}")
                self._note_bound(full)
                raise full
            try:
                return self._retrying(lambda: self._insert(topic, kind, qos, body, payload, keep), allowed, keep,
                                      what)
            except StorageFull:
                if kind == "heartbeat":
                    log.warning("disk full: heartbeat dropped (%d bytes)", len(body))
                    return 0
                raise

    def _insert(self, topic: str, kind: str, qos: int, body: bytes, payload: dict, keep: bool) -> int:
        with self._tx():
            cur = self._db.execute(
                "INSERT INTO messages (topic, kind, qos, payload, nbytes, keep) VALUES (?, ?, ?, ?, ?, ?)",
                (topic, kind, qos, body, len(body), int(keep)))
            self._db.execute("UPDATE meta SET value = MAX(value, ?) WHERE key = 'seq'", (self._seq,))
            if kind == "event" and topic == "event":
                self._hold(cur.lastrowid, [s for s in self._links.values() if payload.get("kind") in s.event_kinds])
            return cur.lastrowid

    # ---- sending side ----------------------------------------------------------------------------------------

    def pending(self, after_id: int, limit: int) -> list[OutboundMessage]:
        with self._lock:
            rows = self._db.execute(
                "SELECT m.id, m.topic, m.qos, m.retain, m.payload, m.chunk_offset, m.chunk_length, d.path, d.id "
                "FROM messages m LEFT JOIN media d ON d.id = m.media_id "
                "WHERE m.id > ? AND NOT EXISTS (SELECT 1 FROM uplink_done u WHERE u.message_id = m.id) "
                "ORDER BY m.id LIMIT ?", (after_id, limit)).fetchall()
            out = []
            for row_id, topic, qos, retain, payload, offset, length, path, media_id in rows:
                if payload is None:
                    payload = self._read_chunk(media_id, path, offset, length)
                    if payload is None:
                        break  # media dropped; later rows re-read by the next call
                out.append(OutboundMessage(row_id, topic, bytes(payload), qos, bool(retain)))
            return out

    def _read_chunk(self, media_id: int, path: str, offset: int, length: int) -> bytes | None:
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(length)
        except OSError as exc:
            data, why = b"", exc.strerror or str(exc)
        else:
            why = f"short read ({len(data)} of {length} bytes at offset {offset})"
        if len(data) == length:
            return data
        log.error("media file %s unreadable (%s); dropping it from the outbox", path, why)
        self._drop_media(media_id, "unreadable")
        return None

    def ack(self, message_id: int) -> None:
        """The broker has the message: forget it; delete a media file once all its rows are acknowledged.
        A row another link still has to deliver is only hidden from the uplink until that link has it."""
        with self._lock:
            freed = self._retrying(lambda: self._ack_rows(message_id), ("heartbeat", "media"), True,
                                   f"ack of #{message_id}")
            if freed is not None:
                self._unlink(freed)

    def _ack_rows(self, message_id: int) -> Path | None:
        with self._tx():
            if self._db.execute("SELECT 1 FROM link_pending WHERE message_id = ? LIMIT 1",
                                (message_id,)).fetchone():
                self._db.execute("INSERT OR IGNORE INTO uplink_done (message_id) VALUES (?)", (message_id,))
                return None
            return self._forget(message_id)

    def _forget(self, message_id: int) -> Path | None:
        """Delete a row every consumer has (inside a transaction); returns a media file that is now unneeded."""
        row = self._db.execute("DELETE FROM messages WHERE id = ? RETURNING media_id", (message_id,)).fetchone()
        self._db.execute("DELETE FROM uplink_done WHERE message_id = ?", (message_id,))
        if row is None or row[0] is None:
            return None  # already acked (duplicate PUBACK) or evicted meanwhile
        done = self._db.execute(
            "UPDATE media SET remaining = remaining - 1 WHERE id = ? RETURNING remaining, path",
            (row[0],)).fetchone()
        if done is None or done[0] > 0:
            return None
        self._db.execute("DELETE FROM media WHERE id = ?", (row[0],))
        return Path(done[1])

    def depth(self) -> int:
        """Rows the MQTT uplink has still to deliver (rows only other links still hold are not counted)."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM messages m WHERE NOT EXISTS "
                                    "(SELECT 1 FROM uplink_done u WHERE u.message_id = m.id)").fetchone()[0]

    def size_bytes(self) -> int:
        """Bytes queued (message payloads and media files); disk_use() says what the outbox occupies on disk."""
        with self._lock:
            return self._db.execute(
                "SELECT (SELECT COALESCE(SUM(nbytes), 0) FROM messages) + "
                "(SELECT COALESCE(SUM(total_bytes), 0) FROM media)").fetchone()[0]

    def next_counter(self, key: str) -> int:
        """A named counter that survives restarts (e.g. a DC-09 link's sequence numbers); first value 1."""
        if key == "seq":
            raise ValueError("'seq' is the event sequence; use next_seq()")
        with self._lock, self._tx():
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, 0)", (key,))
            return self._db.execute("UPDATE meta SET value = value + 1 WHERE key = ? RETURNING value",
                                    (key,)).fetchone()[0]

    # ---- alarm journal ---------------------------------------------------------------------------------------

    def open_alarm(self, event_id: str, start_payload: dict) -> None:
        with self._lock:
            self._retrying(lambda: self._journal(
                "INSERT OR REPLACE INTO alarms (event_id, payload, opened) VALUES (?, ?, ?)",
                (event_id, json.dumps(start_payload), self._clock.wall())), ("heartbeat", "media"), True,
                f"journal of alarm {event_id}")

    def close_alarm(self, event_id: str) -> None:
        with self._lock:
            self._retrying(lambda: self._journal("DELETE FROM alarms WHERE event_id = ?", (event_id,)),
                           ("heartbeat", "media"), True, f"journal of alarm {event_id}")

    def _journal(self, sql: str, args: tuple) -> None:
        with self._tx():
            self._db.execute(sql, args)

    def open_alarms(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT payload FROM alarms ORDER BY opened, rowid").fetchall()
        return [json.loads(payload) for (payload,) in rows]

    def _load_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        if row is None:
            raise StorageError(f"outbox {self.db_path} has no event sequence (damaged meta table)")
        return int(row[0])
