"""The outbox database: its tables, the pragmas that bound it, and migrations from older agents.

Opening reads before it writes: a database already at SCHEMA_VERSION is not written at all, so an agent restarted
on a full disk opens its outbox and can start draining it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.storage.transaction import Transaction, storage_error
from common.errors import StorageError

SCHEMA_VERSION = 2
WAL_CHECKPOINT_PAGES = 64  # checkpoint the WAL every 256 KiB (4 KiB pages) ...
WAL_LIMIT_BYTES = 256 * 1024  # ... and truncate it back to this: the WAL counts in the outbox's bound

_BASE = """
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
_LINKS = """
CREATE TABLE IF NOT EXISTS links (name TEXT PRIMARY KEY, event_kinds TEXT NOT NULL, media INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS link_pending (
    link TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (link, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS link_pending_message ON link_pending (message_id);
CREATE TABLE IF NOT EXISTS uplink_done (message_id INTEGER PRIMARY KEY);
"""

# Version 2: eviction order (keep: alarm-like events go last; rank: snapshots are the last media), retention
# (created, holds) and the durable record of what was dropped until an `evicted` event has reported it.
_V2_COLUMNS = (("messages", "keep", "INTEGER NOT NULL DEFAULT 0"),
               ("media", "rank", "INTEGER NOT NULL DEFAULT 0"),
               ("media", "created", "REAL NOT NULL DEFAULT 0"))
_V2_TABLES = """
CREATE TABLE IF NOT EXISTS evictions (id INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS holds (event_id TEXT PRIMARY KEY, held REAL NOT NULL, reference TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_keep ON messages (kind, keep, id);
CREATE INDEX IF NOT EXISTS media_rank ON media (rank, id);
"""


def open_db(path: Path) -> sqlite3.Connection:
    if sqlite3.sqlite_version_info < (3, 35):
        # UPDATE/DELETE ... RETURNING keeps each put/ack a single atomic statement.
        raise StorageError(f"SQLite {sqlite3.sqlite_version} is too old for the outbox (need 3.35+)")
    try:
        # One connection shared by the pipeline and network threads, serialised by the outbox's lock.
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # survive power loss, not only process death
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise storage_error(f"outbox at {path} cannot be opened", exc) from None
    if version < SCHEMA_VERSION:
        migrate(db, path)
    elif version > SCHEMA_VERSION:
        raise StorageError(f"outbox at {path} has schema {version}, newer than this agent's {SCHEMA_VERSION}")
    return db


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring a new or older outbox to SCHEMA_VERSION, in one transaction."""
    with Transaction(db, path):
        for script in (_BASE, _LINKS):
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)
        for table, column, decl in _V2_COLUMNS:
            if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        for statement in filter(str.strip, _V2_TABLES.split(";")):
            db.execute(statement)
        db.execute("UPDATE media SET rank = 1 WHERE name LIKE 'snapshot%'")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
