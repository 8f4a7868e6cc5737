"""The audit log: append-only, hash-chained and signed, so the unit's history can be proven and its rewriting seen.

One JSON object a line in data_dir/audit.jsonl: `n` (1, 2, ...), `ts`, `kind`, `data`, `prev` (SHA-256 of the
previous line's bytes; 64 zeros for the first), `key` (signing key id) and `sig` (Ed25519 over the line without
`sig`, canonical JSON). Each append is fsynced. A line torn by a power cut is never silently dropped: at the next
open its bytes move to audit.torn-<n> and an entry says so, with their size and SHA-256. A last line that is whole
but not an entry (damaged on the card) stays where it is, since the chain goes on from its bytes, and an entry says
so, with the reason; verify names it too. The head (hash of the last line) goes out in every heartbeat.

On a full disk an append fails without leaving a torn line (the file is cut back to its last whole entry); the
entries that could not be written are counted, and the first append that succeeds is preceded by a `gap` entry
saying how many of which kind were lost, so the chain stays whole and the loss is on record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.evidence.keys import UnitKey
from agent.security_parse import Refused, excerpt, load_json
from agent.storage.transaction import storage_error
from common.clock import Clock, iso_utc
from common.errors import StorageError

log = logging.getLogger(__name__)

FILE = "audit.jsonl"
GENESIS = "0" * 64
MAX_LINE_BYTES = 1 << 20  # an entry is an event or a command's answer, a few KiB at most; far larger is not one


def canonical(entry: dict) -> bytes:
    """The bytes that are hashed and signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def read_entry(line: bytes) -> tuple[dict, int]:
    """One line as an entry and its number, parsed on the bounded path; Refused (a ValueError) says why not."""
    entry = load_json(line, MAX_LINE_BYTES, "line")
    if not isinstance(entry, dict):
        raise Refused("line is not a JSON object")
    number = entry.get("n")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise Refused(f"no entry number (n is {excerpt(repr(number), 40)})")
    return entry, number


@dataclass(frozen=True, slots=True)
class Head:
    count: int
    sha256: str


class AuditLog:
    def __init__(self, data_dir: Path, key: UnitKey, clock: Clock) -> None:
        self.path = Path(data_dir) / FILE
        self._key = key
        self._clock = clock
        self._lock = threading.RLock()
        self.missed: dict[str, int] = {}   # entries a full disk refused, by kind, until a `gap` entry says so
        self._torn: tuple[bytes, int] | None = None  # a torn line not yet set aside (the disk was full)
        self.head = self._open()

    def _open(self) -> Head:
        """Find the head; a torn last line is moved aside and recorded, a damaged one recorded."""
        try:
            data = self.path.read_bytes() if self.path.exists() else b""
        except OSError as exc:
            raise StorageError(f"audit log {self.path}: {exc.strerror or exc}") from None
        complete, _, torn = data.rpartition(b"\n") if not data.endswith(b"\n") else (data[:-1], b"", b"")
        lines = complete.split(b"\n") if complete else []
        self.head, damage = self._last(lines)
        if torn:
            self._torn = (torn, len(complete) + (1 if complete else 0))
            try:
                self._set_aside()
            except StorageError as exc:
                log.error("audit log: a torn last entry could not be set aside yet (%s); appends wait for it", exc)
        if damage:
            try:
                self.append("damaged_entry", damage)
            except StorageError as exc:  # counted in `missed`: the next append that succeeds says so in a gap
                log.error("audit log: the damaged entry could not be recorded yet (%s)", exc)
        return self.head

    def _last(self, lines: list[bytes]) -> tuple[Head, dict | None]:
        """The head after these whole lines, and what is wrong with the last one when it is not an entry."""
        if not lines:
            return Head(0, GENESIS), None
        sha256 = line_hash(lines[-1])
        try:
            return Head(read_entry(lines[-1])[1], sha256), None
        except Refused as refusal:  # the chain goes on from its bytes, numbered as the line it is
            log.warning("audit log %s: the last entry (line %d) is damaged, kept and recorded: %s", self.path,
                        len(lines), refusal)
            return Head(len(lines), sha256), {"line": len(lines), "bytes": len(lines[-1]), "sha256": sha256,
                                              "reason": str(refusal)}

    def _set_aside(self) -> None:
        torn, keep = self._torn
        aside = self.path.with_name(f"audit.torn-{self.head.count + 1}")
        try:
            aside.write_bytes(torn)
        except OSError as exc:
            aside.unlink(missing_ok=True)
            raise storage_error(f"audit log {aside}", exc) from None
        self._torn = None
        with self.path.open("r+b") as stream:
            stream.truncate(keep)
            os.fsync(stream.fileno())
        log.warning("audit log: a torn last entry (%d bytes) was moved to %s", len(torn), aside)
        self.append("torn_entry", {"bytes": len(torn), "sha256": line_hash(torn), "moved_to": aside.name})

    def append(self, kind: str, data: dict) -> Head:
        """Append one signed entry; StorageError (StorageFull on a full disk) if it cannot be written, in
        which case it is counted for the next `gap` entry."""
        with self._lock:
            try:
                if self._torn is not None:
                    self._set_aside()
                if self.missed:
                    self._write("gap", {"missed": dict(sorted(self.missed.items()))})
                    self.missed = {}
                return self._write(kind, data)
            except StorageError:
                self.missed[kind] = self.missed.get(kind, 0) + 1
                raise

    def _write(self, kind: str, data: dict) -> Head:
        entry = {"n": self.head.count + 1, "ts": iso_utc(self._clock.wall()), "kind": kind, "data": data,
                 "prev": self.head.sha256, "key": self._key.id}
        entry["sig"] = self._key.sign(canonical(entry))
        line = canonical(entry)
        try:
            with self.path.open("ab") as stream:
                start = stream.tell()
                try:
                    stream.write(line + b"\n")
                    stream.flush()
                    os.fsync(stream.fileno())
                except OSError:
                    stream.truncate(start)  # no torn line left behind: the chain ends at the last whole entry
                    raise
        except OSError as exc:
            raise storage_error(f"audit log {self.path}", exc) from None
        self.head = Head(entry["n"], line_hash(line))
        return self.head
