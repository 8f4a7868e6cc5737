"""Media in the outbox: a finished file under media_dir queued as a manifest plus chunk rows that reference it
(the bytes stay in the file), dropped with a record of what went, and the start-up repair. Mixed into Outbox."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from agent.storage.media import file_sha256
from common.errors import StorageError, StorageFull

log = logging.getLogger(__name__)

_TOPIC_UNSAFE = set("/+#\0")
CHUNK_ROW_BYTES = 96  # what one chunk row costs in the database, for the bound


def check_topic_part(label: str, value: str) -> None:
    if not value or _TOPIC_UNSAFE & set(value):
        raise ValueError(f"{label} {value!r} cannot be used in an MQTT topic (empty or contains / + # or NUL)")


class MediaStore:
    def put_media(self, event_id: str, name: str, path: Path, content_type: str, chunk_bytes: int,
                  sha256: str | None = None) -> dict:
        """Queue a finished file under media_dir as a manifest plus chunk rows; returns the manifest."""
        check_topic_part("event_id", event_id)
        check_topic_part("media name", name)
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
        with self._lock:
            if self._db.execute("SELECT 1 FROM media WHERE path = ?", (str(path),)).fetchone():
                # A second row set would delete the file under the first once either is fully acknowledged.
                raise ValueError(f"media file {path} is already queued in the outbox")
            # the file is on disk already (counted in disk_use); what it still needs is its rows, but it must
            # fit in the bound as a whole, so the other media make room for it
            if not self._make_room(len(body) + chunks * CHUNK_ROW_BYTES, ("heartbeat", "media"), f"media {path}",
                                   False, incoming_file=total):
                full = StorageFull(f"media file {path} ({total} bytes) does not fit in the outbox "
                                   f"(max_bytes={self.max_bytes})")
                self._note_bound(full)
                raise full
            self._retrying(lambda: self._insert_media(event_id, name, path, total, digest, chunks, chunk_bytes,
                                                      body), ("heartbeat", "media"), False, f"media {path}")
        return manifest

    def _insert_media(self, event_id: str, name: str, path: Path, total: int, digest: str, chunks: int,
                      chunk_bytes: int, body: bytes) -> None:
        base = f"media/{event_id}/{name}"
        with self._tx():
            media_id = self._db.execute(
                "INSERT INTO media (event_id, name, path, total_bytes, sha256, remaining, rank, created) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (event_id, name, str(path), total, digest, chunks + 1, int(name.startswith("snapshot")),
                 self._clock.wall())).lastrowid
            manifest_id = self._db.execute(
                "INSERT INTO messages (topic, kind, qos, payload, media_id, nbytes) VALUES (?,?,1,?,?,?)",
                (f"{base}/manifest", "manifest", body, media_id, len(body))).lastrowid
            self._hold(manifest_id, [s for s in self._links.values() if s.media])
            self._db.executemany(
                "INSERT INTO messages (topic, kind, qos, media_id, chunk_offset, chunk_length, nbytes) "
                "VALUES (?, 'chunk', 1, ?, ?, ?, 0)",
                [(f"{base}/{i}", media_id, i * chunk_bytes, min(chunk_bytes, total - i * chunk_bytes))
                 for i in range(chunks)])

    def is_queued(self, path: Path) -> bool:
        """Whether a media file is already queued (so recovery does not queue it twice)."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM media WHERE path = ?", (str(Path(path).resolve()),)).fetchone()
        return row is not None

    def _drop_media(self, media_id: int, reason: str) -> int:
        """Delete a media item's file, then its rows, recording what went and why; returns the bytes freed.
        The file goes first: unlinking needs no space, and on a full disk it is what makes room for the rest."""
        row = self._db.execute("SELECT event_id, name, path, total_bytes, sha256 FROM media WHERE id = ?",
                               (media_id,)).fetchone()
        if row is None:
            return 0
        event_id, name, path, total, digest = row
        self._unlink(Path(path))
        item = {"what": "media", "name": name, "event_id": event_id, "bytes": total, "sha256": digest,
                "reason": reason}
        with self._tx():
            self._db.execute("DELETE FROM messages WHERE media_id = ?", (media_id,))
            self._drop_link_rows()
            self._db.execute("DELETE FROM media WHERE id = ?", (media_id,))
            self._record_eviction(item)
        log.warning("outbox: dropped media %s of %s (%d bytes, %s)", name, event_id, total, reason)
        return total

    def _unlink(self, path: Path) -> None:
        # Only the file: its event folder may be receiving the alarm's clip right now (the recorder writes there
        # while the uplink deletes the sent snapshot), so empty folders are tidied by recover() at start-up.
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete media file {path}: {exc.strerror or exc}") from None

    # ---- start-up repair -------------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Repair what a crash can leave behind; returns one description per repair. It reads first and
        deletes before it writes, and a repair a full disk refuses is reported and left for the next start."""
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
                    repairs.append(self._repair_media(media_id, path, f"expected {total} bytes, file {found}"))
            for orphan in sorted(p for p in self._media_root.rglob("*") if p.is_file() and p not in queued):
                repairs.append(f"media file {orphan} is on disk but not queued (left in place)")
            for folder in [p for p in self._media_root.iterdir() if p.is_dir() and not any(p.iterdir())]:
                folder.rmdir()  # tidy: every file of that event was sent
            self._others_at = None  # the orphans counted in disk_use(): walk again
        for line in repairs:
            log.warning("outbox recovery: %s", line)
        return repairs

    def _repair_media(self, media_id: int, path: str, why: str) -> str:
        try:
            self._drop_media(media_id, "damaged")
        except StorageFull as exc:
            self._note_full(exc)
            return f"queued media {path} is damaged ({why}); the disk is full, its rows go at the next start"
        return f"dropped queued media {path}: {why}"
