"""The outbox's bound: what it occupies on disk (database, WAL, media, the clip being recorded, the reserve), the
eviction order that keeps it under max_bytes, and the record of what was dropped. Mixed into Outbox.

The reserve is a real file (outbox.reserve, reserve_bytes long) inside the bound: heartbeats, media and ordinary
events must fit beside it; an alarm (or an `evicted` report) that finds no room releases it, so the alarm is
stored even on a disk another program filled. The supervisor's storage check puts it back once there is room.
Eviction order: heartbeats, then (alarms only) the reserve, then media (clips before snapshots, oldest first),
then ordinary events, then - for an alarm only - the oldest alarm-like events.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass

from agent.storage.schema import WAL_CHECKPOINT_PAGES, WAL_LIMIT_BYTES
from common.errors import StorageError, StorageFull

log = logging.getLogger(__name__)

RESERVE_FILE = "outbox.reserve"
ROW_BYTES = 2 * 4096     # what a put may add beyond its payload: a new table page and a new index page
WAL_BUDGET = WAL_LIMIT_BYTES + (WAL_CHECKPOINT_PAGES + 16) * 4096  # the WAL at its largest: counted always
DISK_MARGIN = 64 * 1024  # kept free on the filesystem beyond a write, for the WAL's pages of it
UNQUEUED_SCAN_S = 60.0  # how often media_dir is walked for files the outbox does not queue
DRAINED_FRACTION = 0.8   # an "outbox full" fault clears once what the outbox holds is below this share of the bound


_PROBLEMS = (None, "disk_full", "outbox_full")  # stored by index in meta 'storage_fault'


@dataclass(frozen=True)
class DiskUse:
    """Bytes the outbox occupies, by part; fs_free is what the filesystem still has."""

    database: int   # database file, plus the WAL and shared-memory file at WAL_BUDGET or more
    db_spare: int   # free pages inside the database file (reused before it grows)
    media: int      # every file under media_dir, the clip being recorded (.part) included
    reserve: int    # the reserve file
    fs_free: int

    @property
    def total(self) -> int:
        return self.database + self.media + self.reserve

    @property
    def committed(self) -> int:
        """What counts against max_bytes: the total less the database's reusable free pages."""
        return self.total - self.db_spare


@dataclass(frozen=True)
class StorageState:
    problem: str | None   # None | "disk_full" | "outbox_full"
    detail: str
    use: DiskUse
    max_bytes: int


def _file_bytes(path) -> int:
    """Disk a media file takes (its blocks, at least its size); 0 for a folder or a file gone meanwhile."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0
    return 0 if path.is_dir() else max(stat.st_size, stat.st_blocks * 512)


def _size(path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class Bound:
    # ---- measuring -------------------------------------------------------------------------------------------

    def disk_use(self) -> DiskUse:
        with self._lock:
            page, count, free = (self._db.execute(f"PRAGMA {name}").fetchone()[0]
                                 for name in ("page_size", "page_count", "freelist_count"))
            wal = sum(_size(self.db_path.with_name(self.db_path.name + suffix)) for suffix in ("-wal", "-shm"))
            # the file grows only at checkpoints: page_count is its size once the WAL's pages are in
            database = max(_size(self.db_path), page * count) + max(wal, WAL_BUDGET)
            media = self._db.execute("SELECT COALESCE(SUM(total_bytes), 0) FROM media").fetchone()[0]
            media += self._unqueued_bytes()
            fs = os.statvfs(self.data_dir)
            return DiskUse(database, free * page if count else 0, media, _size(self._reserve_path),
                           fs.f_bavail * fs.f_frsize)

    def _unqueued_bytes(self) -> int:
        """Files under media_dir not (yet) queued: the running alarm's (the clip being recorded, media about
        to be queued), listed each time (a handful of files), and any others (left by a crash or an older
        agent), found by a walk of media_dir at most every UNQUEUED_SCAN_S: a put never walks a big backlog."""
        queued = {row[0] for row in self._db.execute("SELECT path FROM media")}
        now = self._clock.monotonic()
        if self._others_at is None or now - self._others_at >= UNQUEUED_SCAN_S:
            self._others_at = now
            self._others = sum(_file_bytes(path) for path in self._media_root.rglob("*")
                               if path.parent.name != self.protected and str(path) not in queued)
        live = 0
        if self.protected is not None:
            live = sum(_file_bytes(path) for path in (self._media_root / self.protected).glob("*")
                       if str(path) not in queued)
        return self._others + live

    def disk_bytes(self) -> int:
        return self.disk_use().total

    def _fits(self, incoming: int, keep: bool, incoming_file: int = 0) -> bool:
        """Whether incoming bytes fit now, in the bound and on the filesystem. Only the reserve's own victim
        entry (alarms only) frees the reserve; a file queued as media must fit beside it unless kept."""
        use = self.disk_use()
        return (use.committed + incoming <= self.max_bytes and incoming + DISK_MARGIN <= use.fs_free
                and incoming_file + incoming <= self.max_bytes - (0 if keep else self.reserve_bytes))

    # ---- making room -----------------------------------------------------------------------------------------

    def _make_room(self, incoming: int, allowed: tuple[str, ...], what: str, keep: bool = False,
                   incoming_file: int = 0) -> bool:
        """Evict in order (see the module's doc) until incoming fits; nothing when it cannot fit even then."""
        incoming += ROW_BYTES
        if self._fits(incoming, keep, incoming_file):
            return True
        victims = self._victims(allowed, keep)
        if not keep and (incoming_file + incoming > self.max_bytes - self.reserve_bytes or
                         self.disk_use().committed - self._evictable(victims) + incoming > self.max_bytes):
            return False  # cannot fit even with every allowed eviction: evict nothing for it
        for victim in victims:
            if victim == "kept" and self.disk_use().committed - self._evictable(["kept"]) + incoming > \
                    self.max_bytes:
                break  # what holds the bound is no alarm (the clip being recorded): alarms stay, see below
            while not self._fits(incoming, keep, incoming_file):
                if not self._evict_one(victim, self._binding(self.disk_use()), what):
                    break
        if self._fits(incoming, keep, incoming_file):
            return True
        if not keep:
            return False
        # an alarm is never dropped for a bound that evicting alarms cannot meet while the disk has room:
        # stored beyond it, and the storage check evicts down to it; older alarms go only for want of disk
        while not self._on_disk(incoming) and self._evict_one("kept", "disk_full", what):
            pass
        if self._on_disk(incoming):
            log.warning("outbox over max_bytes=%d: %s stored beyond the bound", self.max_bytes, what)
            self._evicted_since_check += 1
            return True
        return False

    def _on_disk(self, incoming: int) -> bool:
        return incoming + DISK_MARGIN <= self.disk_use().fs_free

    @staticmethod
    def _victims(allowed: tuple[str, ...], keep: bool) -> list[str]:
        order = ["heartbeat"] + (["reserve"] if keep else []) + ["media", "event"] + (["kept"] if keep else [])
        return [v for v in order if v in allowed or v == "reserve" or (v == "kept" and "event" in allowed)]

    def _evictable(self, victims: list[str]) -> int:
        total = 0
        for victim in victims:
            if victim == "reserve":
                total += _size(self._reserve_path)
            elif victim == "media":
                total += self._db.execute("SELECT COALESCE(SUM(total_bytes), 0) FROM media").fetchone()[0]
                total += self._sum_rows("kind = 'manifest'")
            else:
                kind, keep = ("event", 1) if victim == "kept" else (victim, 0)
                total += self._sum_rows(f"kind = '{kind}' AND keep = {keep}")
        return total

    def _sum_rows(self, where: str) -> int:
        return self._db.execute(f"SELECT COALESCE(SUM(nbytes + {ROW_BYTES}), 0) FROM messages WHERE {where}"
                                ).fetchone()[0]

    def _evict_one(self, victim: str, reason: str, what: str) -> bool:
        """Drop the first item of this victim class; False when there is none. The media of the running
        alarm (`protected`) are never evicted: its own clip may be what holds the bound."""
        if victim == "reserve":
            return self._release_reserve(what)
        if victim == "media":
            row = self._db.execute("SELECT id FROM media WHERE event_id IS NOT ? ORDER BY rank, id LIMIT 1",
                                   (self.protected,)).fetchone()
            if row is None:
                return False
            self._drop_media(row[0], reason)
            self._evicted_since_check += 1
            return True
        kind, keep = ("event", 1) if victim == "kept" else (victim, 0)
        with self._tx():
            row = self._db.execute(
                "DELETE FROM messages WHERE id = (SELECT id FROM messages WHERE kind = ? AND keep = ? "
                "ORDER BY id LIMIT 1) RETURNING id, topic, nbytes, payload", (kind, keep)).fetchone()
            if row is not None:
                self._drop_link_rows()
                if row[1] != "heartbeat":  # a station waits for no heartbeat: those are only logged
                    self._record_eviction(_message_item(kind, row[1], row[3], reason))
        if row is None:
            return False
        self._evicted_since_check += 1
        log.warning("%s (max_bytes=%d): evicted %s #%d on %s (%d bytes) to make room for %s",
                    reason.replace("_", " "), self.max_bytes, kind, row[0], row[1], row[2], what)
        return True

    def _retrying(self, write, allowed: tuple[str, ...], keep: bool, what: str):
        """Run write(); on a full disk free space the way the bound would (the reserve for alarms, then the
        oldest allowed items) and try once more. A second failure is raised as StorageFull."""
        try:
            return write()
        except StorageFull as exc:
            self._note_full(exc)
            freed = False
            for victim in self._victims(allowed, keep):
                if self._evict_one(victim, "disk_full", what):
                    freed = True
                    break
            if not freed:
                raise
        return write()

    def _note_bound(self, exc: StorageError) -> None:
        """A put refused by the bound (not the disk): the outbox is full."""
        self._evicted_since_check += 1
        log.error("outbox full: %s", exc)

    def _note_full(self, exc: StorageError) -> None:
        self._full_errors += 1
        self._last_full = str(exc)
        log.error("storage full: %s", exc)

    # ---- the reserve -----------------------------------------------------------------------------------------

    def _release_reserve(self, what: str) -> bool:
        if not self._reserve_path.exists():
            return False
        self._reserve_path.unlink()
        log.warning("outbox: reserve of %d bytes released for %s", self.reserve_bytes, what)
        return True

    def _restore_reserve(self) -> bool:
        """Put the reserve back if the bound and the filesystem have room for it; True if it is in place."""
        if self._reserve_path.exists():
            return True
        use = self.disk_use()
        if use.committed + self.reserve_bytes > self.max_bytes or use.fs_free < self.reserve_bytes + DISK_MARGIN:
            return False
        try:
            with open(self._reserve_path, "wb") as stream:
                os.posix_fallocate(stream.fileno(), 0, self.reserve_bytes)
                os.fsync(stream.fileno())
        except OSError as exc:
            self._reserve_path.unlink(missing_ok=True)
            log.warning("outbox: reserve not restored: %s", exc.strerror or exc)
            return False
        return True

    # ---- the storage check (supervisor, once a second) -------------------------------------------------------

    def check_storage(self) -> StorageState:
        """Keep the bound (the clip being recorded grows outside any put), put the reserve back when there is
        room, and say whether storage is in trouble: disk_full (a write failed, or the filesystem has less free
        than the reserve) or outbox_full (items were evicted, or the reserve is spent); a fault clears once
        writes succeed, the reserve is back and the outbox has drained below DRAINED_FRACTION of its bound."""
        with self._lock:
            self.make_headroom()  # room for the reserve and the clip, evicting what a put would evict
            reserve_ok = self._restore_reserve()
            use = self.disk_use()
            failed, self._full_errors = self._full_errors, 0
            evicted, self._evicted_since_check = self._evicted_since_check, 0
            if failed or (not reserve_ok and use.fs_free < self.reserve_bytes + DISK_MARGIN):
                problem = "disk_full"
                detail = self._last_full if failed else f"filesystem has {use.fs_free} bytes free"
            elif evicted or not reserve_ok or (
                    self._problem is not None and use.committed > DRAINED_FRACTION * self._limit(use)):
                # evicting because the filesystem is smaller than the bound is a full disk too
                problem = self._binding(use)
                detail = (f"outbox holds {use.committed} of max_bytes={self.max_bytes}; "
                          f"{evicted} item(s) evicted since the last check")
            else:
                problem, detail = None, f"outbox holds {use.committed} of max_bytes={self.max_bytes}"
            if problem != self._problem:
                self._save_problem(problem)
            self._problem = problem
            return StorageState(problem, detail, use, self.max_bytes)

    @property
    def storage_problem(self) -> str | None:
        """The storage fault in force, as the last check left it (kept across restarts)."""
        return self._problem

    def _load_problem(self) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'storage_fault'").fetchone()
        return _PROBLEMS[row[0]] if row is not None and 0 <= row[0] < len(_PROBLEMS) else None

    def _save_problem(self, problem: str | None) -> None:
        """Kept, so that a fault raised before a restart is cleared after it (a station waits for the restore)."""
        try:
            with self._tx():
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('storage_fault', ?)",
                                 (_PROBLEMS.index(problem),))
        except StorageFull as exc:
            self._note_full(exc)

    def _limit(self, use: DiskUse) -> int:
        """The outbox's real bound: max_bytes, or less when the filesystem cannot hold that much."""
        return min(self.max_bytes, use.committed + use.fs_free)

    def _binding(self, use: DiskUse) -> str:
        """Which limit an eviction now is for: the filesystem (disk_full) when it holds less than max_bytes, else
        the bound (outbox_full). What the station is told an item went for, and what the fault says."""
        return "disk_full" if self._limit(use) < self.max_bytes else "outbox_full"

    def _over_bound(self) -> bool:
        """Whether the reserve (if it is out) and the headroom do not fit, in the bound or on the filesystem.
        The headroom (reserve_bytes again) is room for the clip being recorded to grow until the next check."""
        use = self.disk_use()
        wanted = (0 if use.reserve else self.reserve_bytes) + self.reserve_bytes
        return use.committed + wanted > self.max_bytes or use.fs_free < wanted + DISK_MARGIN

    def make_headroom(self) -> None:
        """Before and while an alarm's media are written: evict heartbeats, then media, until the headroom
        is free."""
        with self._lock:
            use = self.disk_use()
            reason = self._binding(use)
            for victim in ("heartbeat", "media"):
                while self._over_bound() and self._evict_one(victim, reason, "the alarm's media"):
                    pass

    def keep_headroom(self) -> None:
        """Per frame while a clip is recorded: one statvfs, and make_headroom() only when the filesystem is
        short of it (the bound itself is kept by the storage check each second)."""
        fs = os.statvfs(self.data_dir)
        if fs.f_bavail * fs.f_frsize < 2 * self.reserve_bytes + DISK_MARGIN:
            self.make_headroom()

    def note_full(self, exc: StorageError) -> None:
        """A write outside the outbox (the recorder's clip or snapshot) failed for lack of space."""
        with self._lock:
            self._note_full(exc)

    # ---- what was dropped, until an `evicted` event has said so ----------------------------------------------

    def _record_eviction(self, item: dict) -> None:
        """Inside the dropping transaction, so a crash cannot lose the record of a drop."""
        self._db.execute("INSERT INTO evictions (item) VALUES (?)", (json.dumps(item, sort_keys=True),))

    def unreported_evictions(self, limit: int = 50) -> list[tuple[int, dict]]:
        with self._lock:
            rows = self._db.execute("SELECT id, item FROM evictions ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [(row_id, json.loads(item)) for row_id, item in rows]

    def evictions_reported(self, ids: list[int]) -> None:
        with self._lock, self._tx():
            self._db.executemany("DELETE FROM evictions WHERE id = ?", [(i,) for i in ids])


def _message_item(kind: str, topic: str, payload: bytes | None, reason: str) -> dict:
    body = bytes(payload or b"")
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = {}
    event_id = decoded.get("event_id") or decoded.get("id") if isinstance(decoded, dict) else None
    return {"what": "event" if kind == "event" else "result", "name": topic, "event_id": event_id or None,
            "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(), "reason": reason}
