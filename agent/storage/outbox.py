"""Durable store-and-forward outbox: everything the unit sends waits here until the broker acknowledged it.

SQLite in WAL mode holds messages and the media index; media bytes stay in their files under media_dir and
chunk rows only reference (file, offset, length), so a 50 MB clip is never copied into the database.
Every put commits before returning (synchronous=FULL), so a SIGKILL or power cut loses nothing that was put.

The parts, by job: schema.py (tables, pragmas, migrations), transaction.py (writes, full-disk errors),
message_queue.py (messages, seq, acks, alarm journal), links.py (per-link delivery), media_store.py (media rows,
drops, start-up repair), bound.py (disk use, reserve, eviction, storage check), retention.py (age and holds).
"""

from __future__ import annotations

import threading
from pathlib import Path

from agent.storage.bound import RESERVE_FILE, Bound, DiskUse, StorageState
from agent.storage.links import LinkMessage, Links, LinkSpec
from agent.storage.media_store import MediaStore
from agent.storage.message_queue import KEEP_KINDS, MessageQueue, OutboundMessage
from agent.storage.retention import Retention
from agent.storage.schema import open_db
from agent.storage.transaction import Transaction
from common.clock import Clock
from common.errors import StorageError

__all__ = ["KEEP_KINDS", "DiskUse", "LinkMessage", "LinkSpec", "OutboundMessage", "Outbox", "StorageState"]

DEFAULT_RESERVE_BYTES = 512 * 1024


class Outbox(MessageQueue, Links, MediaStore, Bound, Retention):
    def __init__(self, data_dir: Path, max_bytes: int, clock: Clock, reserve_bytes: int | None = None) -> None:
        """max_bytes bounds everything the outbox occupies on disk; reserve_bytes of it are kept for alarms
        (default: 512 KiB, at most an eighth of max_bytes)."""
        self.data_dir = Path(data_dir)
        self.media_dir = self.data_dir / "media"
        self.max_bytes = int(max_bytes)
        self.reserve_bytes = int(min(DEFAULT_RESERVE_BYTES, max_bytes // 8) if reserve_bytes is None
                                 else reserve_bytes)
        if not 0 <= self.reserve_bytes < self.max_bytes:
            raise ValueError(f"reserve_bytes must be below max_bytes, got {self.reserve_bytes} of {self.max_bytes}")
        self._clock = clock
        self._lock = threading.RLock()
        self.db_path = self.data_dir / "outbox.sqlite"
        self._reserve_path = self.data_dir / RESERVE_FILE
        self._full_errors = 0
        self._last_full = ""
        self._evicted_since_check = 0
        self._problem: str | None = None
        self.protected: str | None = None  # event id of the running alarm: its media are not evicted
        self._others, self._others_at = 0, None  # unqueued media bytes outside it, and when last walked
        for folder in (self.data_dir, self.media_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create outbox directory {folder}: {exc.strerror or exc}") from None
        self._media_root = self.media_dir.resolve()  # stored media paths are resolved; compare like with like
        self._db = open_db(self.db_path)
        self._check_writable()
        self._links = self._load_links()
        self._seq = self._load_seq()
        self._problem = self._load_problem()
        with self._lock:
            self._restore_reserve()

    def _check_writable(self) -> None:
        # an empty file needs no data block: this finds a read-only or foreign-owned folder, not a full disk
        probe = self.media_dir / ".write-probe"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StorageError(f"outbox at {self.db_path} is not writable: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self) -> Transaction:
        """A write transaction committed on exit (rolled back on error)."""
        return Transaction(self._db, self.db_path)
