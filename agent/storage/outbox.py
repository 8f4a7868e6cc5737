"""Durable store-and-forward outbox: everything the unit sends waits here until the broker acknowledged it.

SQLite in WAL mode holds messages and the media index; media bytes stay in their files under media_dir and
chunk rows only reference (file, offset, length), so a 50 MB clip is never copied into the database.
Every put commits before returning (synchronous=FULL), so a SIGKILL or power cut loses nothing that was put.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.storage.media import file_sha256
from common.clock import Clock
from common.errors import StorageError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- AUTOINCREMENT: ids are never reused, so the uplink's "after_id" cursor can never skip a new row.
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    kind TEXT NOT NULL,              -- event | heartbeat | manifest | chunk
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    payload BLOB,                    -- NULL for chunk rows (bytes live in the media file)
    media_id INTEGER,
    chunk_offset INTEGER,
    chunk_length INTEGER,
    nbytes INTEGER NOT NULL          -- bytes this row adds to size_bytes (0 for chunks: the file counts)
);
CREATE INDEX IF NOT EXISTS messages_kind ON messages (kind, id);
CREATE INDEX IF NOT EXISTS messages_media ON messages (media_id);
CREATE TABLE IF NOT EXISTS media (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    total_bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    remaining INTEGER NOT NULL       -- manifest + chunk rows not yet acknowledged
);
CREATE TABLE IF NOT EXISTS alarms (event_id TEXT PRIMARY KEY, payload TEXT NOT NULL, opened REAL NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('seq', 0);
"""

# Per-link delivery: the MQTT uplink reads `messages` as before; each other link (an ARC receiver, the video-alarm
# mailer) registers which rows it wants, and gets a link_pending row for each one it has not yet delivered. A
# message the uplink acknowledged while a link still holds it goes to uplink_done (hidden from the uplink) and is
# freed when the last link acknowledges it too.
_LINK_SCHEMA = """
CREATE TABLE IF NOT EXISTS links (name TEXT PRIMARY KEY, event_kinds TEXT NOT NULL, media INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS link_pending (
    link TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (link, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS link_pending_message ON link_pending (message_id);
CREATE TABLE IF NOT EXISTS uplink_done (message_id INTEGER PRIMARY KEY);
"""

_TOPIC_UNSAFE = set("/+#\0")


@dataclass(frozen=True)
class OutboundMessage:
    id: int
    topic: str        # relative to the topic root, e.g. "event" or "media/<event_id>/clip.mp4/0"
    payload: bytes
    qos: int
    retain: bool


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


def _check_topic_part(label: str, value: str) -> None:
    if not value or _TOPIC_UNSAFE & set(value):
        raise ValueError(f"{label} {value!r} cannot be used in an MQTT topic (empty or contains / + # or NUL)")


class Outbox:
    def __init__(self, data_dir: Path, max_bytes: int, clock: Clock) -> None:
        self.data_dir = Path(data_dir)
        self.media_dir = self.data_dir / "media"
        self.max_bytes = int(max_bytes)
        self._clock = clock
        self._lock = threading.RLock()
        self.db_path = self.data_dir / "outbox.sqlite"
        for folder in (self.data_dir, self.media_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create outbox directory {folder}: {exc.strerror or exc}") from None
        self._media_root = self.media_dir.resolve()  # stored media paths are resolved; compare like with like
        self._db = self._open_db()
        self._links = self._load_links()

    def _open_db(self) -> sqlite3.Connection:
        if sqlite3.sqlite_version_info < (3, 35):
            # UPDATE/DELETE ... RETURNING keeps each put/ack a single atomic statement.
            raise StorageError(f"SQLite {sqlite3.sqlite_version} is too old for the outbox (need 3.35+)")
        try:
            # One connection shared by the pipeline and network threads, serialised by self._lock.
            db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # survive power loss, not only process death
            db.executescript(_SCHEMA)
            db.executescript(_LINK_SCHEMA)
            probe = self.media_dir / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"outbox at {self.db_path} is not writable: {exc}") from None
        return db

    # ---- sequence and plain messages -------------------------------------------------------------------------

    def next_seq(self) -> int:
        with self._lock, self._tx():
            return self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'seq' RETURNING value"
                                    ).fetchone()[0]

    def put_message(self, topic: str, payload: dict, kind: Literal["event", "heartbeat"], qos: int = 1) -> int:
        """Queue a JSON message; returns its row id, or 0 if a heartbeat was dropped because the outbox is full
        of alarms and media (a heartbeat never pushes those out)."""
        if kind not in ("event", "heartbeat"):
            raise ValueError(f"message kind must be 'event' or 'heartbeat', got {kind!r}")
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1, got {qos!r}")
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        with self._lock:
            allowed = ("heartbeat",) if kind == "heartbeat" else ("heartbeat", "media", "event")
            if not self._make_room(len(body), allowed, f"{kind} on {topic}"):
                if kind == "heartbeat":
                    log.warning("outbox full of alarms/media: heartbeat dropped (%d bytes)", len(body))
                    return 0
                raise StorageError(f"{kind} message of {len(body)} bytes does not fit in the outbox "
                                   f"(max_bytes={self.max_bytes}) at {self.db_path}")
            with self._tx():
                cur = self._db.execute(
                    "INSERT INTO messages (topic, kind, qos, payload, nbytes) VALUES (?, ?, ?, ?, ?)",
                    (topic, kind, qos, body, len(body)))
                if kind == "event" and topic == "event":
                    self._hold(cur.lastrowid, [s for s in self._links.values()
                                               if payload.get("kind") in s.event_kinds])
                return cur.lastrowid

    # ---- media -----------------------------------------------------------------------------------------------

    def put_media(self, event_id: str, name: str, path: Path, content_type: str, chunk_bytes: int,
                  sha256: str | None = None) -> dict:
        """Queue a finished file under media_dir as a manifest plus chunk rows; returns the manifest."""
        _check_topic_part("event_id", event_id)
        _check_topic_part("media name", name)
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
        path = Path(path).resolve()
        if not path.is_relative_to(self._media_root):
            # The outbox deletes media once sent; it must never delete files it does not own.
            raise StorageError(f"media file {path} is not under the outbox media directory {self.media_dir}")
        try:
            total = path.stat().st_size
            digest = sha256 or file_sha256(path)
        except OSError as exc:
            raise StorageError(f"cannot read media file {path}: {exc.strerror or exc}") from None
        chunks = (total + chunk_bytes - 1) // chunk_bytes
        manifest = {"event_id": event_id, "name": name, "content_type": content_type, "total_bytes": total,
                    "chunk_bytes": chunk_bytes, "chunks": chunks, "sha256": digest}
        body = json.dumps(manifest, separators=(",", ":")).encode("utf-8")
        base = f"media/{event_id}/{name}"
        with self._lock:
            if self._db.execute("SELECT 1 FROM media WHERE path = ?", (str(path),)).fetchone():
                # A second row set would delete the file under the first once either is fully acknowledged.
                raise ValueError(f"media file {path} is already queued in the outbox")
            if not self._make_room(total + len(body), ("heartbeat", "media"), f"media {path}"):
                raise StorageError(f"media file {path} ({total} bytes) does not fit in the outbox "
                                   f"(max_bytes={self.max_bytes})")
            with self._tx():
                media_id = self._db.execute(
                    "INSERT INTO media (event_id, name, path, total_bytes, sha256, remaining) VALUES (?,?,?,?,?,?)",
                    (event_id, name, str(path), total, digest, chunks + 1)).lastrowid
                manifest_id = self._db.execute(
                    "INSERT INTO messages (topic, kind, qos, payload, media_id, nbytes) VALUES (?,?,1,?,?,?)",
                    (f"{base}/manifest", "manifest", body, media_id, len(body))).lastrowid
                self._hold(manifest_id, [s for s in self._links.values() if s.media])
                self._db.executemany(
                    "INSERT INTO messages (topic, kind, qos, media_id, chunk_offset, chunk_length, nbytes) "
                    "VALUES (?, 'chunk', 1, ?, ?, ?, 0)",
                    [(f"{base}/{i}", media_id, i * chunk_bytes, min(chunk_bytes, total - i * chunk_bytes))
                     for i in range(chunks)])
        return manifest

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
        self._drop_media(media_id)
        return None

    def ack(self, message_id: int) -> None:
        """The broker has the message: forget it; delete a media file once all its rows are acknowledged.
        A row another link still has to deliver is only hidden from the uplink until that link has it."""
        with self._lock:
            with self._tx():
                if self._db.execute("SELECT 1 FROM link_pending WHERE message_id = ? LIMIT 1",
                                    (message_id,)).fetchone():
                    self._db.execute("INSERT OR IGNORE INTO uplink_done (message_id) VALUES (?)", (message_id,))
                    return
                freed = self._forget(message_id)
            if freed is not None:
                self._unlink(freed)

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

    def is_queued(self, path: Path) -> bool:
        """Whether a media file is already queued (so recovery does not queue it twice)."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM media WHERE path = ?", (str(Path(path).resolve()),)).fetchone()
        return row is not None

    def depth(self) -> int:
        """Rows the MQTT uplink has still to deliver (rows only other links still hold are not counted)."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM messages m WHERE NOT EXISTS "
                                    "(SELECT 1 FROM uplink_done u WHERE u.message_id = m.id)").fetchone()[0]

    def size_bytes(self) -> int:
        with self._lock:
            return self._db.execute(
                "SELECT (SELECT COALESCE(SUM(nbytes), 0) FROM messages) + "
                "(SELECT COALESCE(SUM(total_bytes), 0) FROM media)").fetchone()[0]

    # ---- per-link delivery (ARC receivers, mailer) ------------------------------------------------------------

    def register_link(self, name: str, event_kinds: tuple[str, ...] | frozenset[str] = (), media: bool = False) -> None:
        """Declare a link: from now on every stored row it wants waits for it too. Idempotent (call at start-up);
        rows stored before the first registration are not given to it."""
        if not name:
            raise ValueError("a link needs a name")
        spec = LinkSpec(name, frozenset(event_kinds), bool(media))
        with self._lock, self._tx():
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

    def next_counter(self, key: str) -> int:
        """A named counter that survives restarts (e.g. a DC-09 link's sequence numbers); first value 1."""
        if key == "seq":
            raise ValueError("'seq' is the event sequence; use next_seq()")
        with self._lock, self._tx():
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, 0)", (key,))
            return self._db.execute("UPDATE meta SET value = value + 1 WHERE key = ? RETURNING value",
                                    (key,)).fetchone()[0]

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

    # ---- alarm journal ---------------------------------------------------------------------------------------

    def open_alarm(self, event_id: str, start_payload: dict) -> None:
        with self._lock, self._tx():
            self._db.execute("INSERT OR REPLACE INTO alarms (event_id, payload, opened) VALUES (?, ?, ?)",
                             (event_id, json.dumps(start_payload), self._clock.wall()))

    def close_alarm(self, event_id: str) -> None:
        with self._lock, self._tx():
            self._db.execute("DELETE FROM alarms WHERE event_id = ?", (event_id,))

    def open_alarms(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT payload FROM alarms ORDER BY opened, rowid").fetchall()
        return [json.loads(payload) for (payload,) in rows]

    # ---- start-up repair -------------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Repair what a crash can leave behind; returns one description per repair."""
        repairs = []
        with self._lock:
            for part in sorted(self._media_root.rglob("*.part")):
                self._unlink(part)
                repairs.append(f"removed half-written file {part}")
            rows = self._db.execute("SELECT id, path, total_bytes FROM media ORDER BY id").fetchall()
            queued = set()
            for media_id, path, total in rows:
                queued.add(Path(path))
                try:
                    size = Path(path).stat().st_size
                except FileNotFoundError:
                    size = None
                if size != total:
                    found = "missing" if size is None else f"{size} bytes"
                    self._drop_media(media_id)
                    repairs.append(f"dropped queued media {path}: expected {total} bytes, file {found}")
            for orphan in sorted(p for p in self._media_root.rglob("*") if p.is_file() and p not in queued):
                repairs.append(f"media file {orphan} is on disk but not queued (left in place)")
            for folder in [p for p in self._media_root.iterdir() if p.is_dir() and not any(p.iterdir())]:
                folder.rmdir()  # tidy: every file of that event was sent
        for line in repairs:
            log.warning("outbox recovery: %s", line)
        return repairs

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- internals -------------------------------------------------------------------------------------------

    def _tx(self):
        """A write transaction committed on exit (rolled back on error)."""
        return _Transaction(self._db, self.db_path)

    def _make_room(self, incoming: int, allowed: tuple[str, ...], what: str) -> bool:
        """Evict oldest heartbeats, then oldest media, then oldest events (as allowed) until incoming fits."""
        used = self.size_bytes()
        if used - sum(self._bytes_of(kind) for kind in allowed) + incoming > self.max_bytes:
            return False  # cannot fit even with every allowed eviction: evict nothing for it
        for victim_kind in ("heartbeat", "media", "event"):
            while used + incoming > self.max_bytes and victim_kind in allowed:
                freed = self._evict_oldest(victim_kind, what)
                if freed is None:
                    break
                used -= freed
        return used + incoming <= self.max_bytes

    def _bytes_of(self, kind: str) -> int:
        """Bytes that evicting every queued item of this kind would free."""
        if kind == "media":
            files = self._db.execute("SELECT COALESCE(SUM(total_bytes), 0) FROM media").fetchone()[0]
            kind = "manifest"
        else:
            files = 0
        rows = self._db.execute("SELECT COALESCE(SUM(nbytes), 0) FROM messages WHERE kind = ?", (kind,)).fetchone()
        return files + rows[0]

    def _evict_oldest(self, kind: str, what: str) -> int | None:
        if kind == "media":
            row = self._db.execute("SELECT id, path, total_bytes FROM media ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return None
            freed = row[2] + self._drop_media(row[0])
            log.warning("outbox full (max_bytes=%d): evicted media %s (%d bytes) to make room for %s",
                        self.max_bytes, row[1], row[2], what)
            return freed
        with self._tx():
            row = self._db.execute(
                "DELETE FROM messages WHERE id = (SELECT id FROM messages WHERE kind = ? ORDER BY id LIMIT 1) "
                "RETURNING id, topic, nbytes", (kind,)).fetchone()
            self._drop_link_rows()
        if row is None:
            return None
        log.warning("outbox full (max_bytes=%d): evicted %s #%d on %s (%d bytes) to make room for %s",
                    self.max_bytes, kind, row[0], row[1], row[2], what)
        return row[2]

    def _drop_media(self, media_id: int) -> int:
        """Delete a media item's rows and its file; returns the message payload bytes freed."""
        with self._tx():
            freed = self._db.execute("SELECT COALESCE(SUM(nbytes), 0) FROM messages WHERE media_id = ?",
                                     (media_id,)).fetchone()[0]
            self._db.execute("DELETE FROM messages WHERE media_id = ?", (media_id,))
            self._drop_link_rows()
            row = self._db.execute("DELETE FROM media WHERE id = ? RETURNING path", (media_id,)).fetchone()
        if row is not None:
            self._unlink(Path(row[0]))
        return freed

    def _unlink(self, path: Path) -> None:
        # Only the file: its event folder may be receiving the alarm's clip right now (the recorder writes there
        # while the uplink deletes the sent snapshot), so empty folders are tidied by recover() at start-up.
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete media file {path}: {exc.strerror or exc}") from None


class _Transaction:
    def __init__(self, db: sqlite3.Connection, where: Path) -> None:
        self._db, self._where = db, where

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageError(f"outbox {self._where}: cannot start a write: {exc}") from None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as err:
                self._db.execute("ROLLBACK")
                raise StorageError(f"outbox {self._where}: write failed: {err}") from None
        else:
            self._db.execute("ROLLBACK")
        return False
