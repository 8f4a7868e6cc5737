"""Media reassembly (station side): a unit's chunks back into files, bounded against a hostile publisher.

Chunks may arrive before their manifest, out of order, or twice (at-least-once delivery); a file is assembled
once the manifest and every chunk index are present, then checked against the manifest's SHA-256 and, with an
out folder, saved as out/<device>/<event id>/<name> (each name sanitised: station/paths.py).

Everything is held in memory until the file is whole, so every bound is the station's own, never the sender's:
- a manifest announcing more than `max_file_bytes`, chunks larger than a unit sends, or a chunk count that does
  not match its sizes is refused;
- a part outside 0..chunks-1, or a chunk larger than its place allows (chunk_bytes; the rest of total_bytes for
  the last one, so a file never holds more than its total_bytes) is refused;
- at most `early_chunks` chunks of a file are held before its manifest arrives;
- at most `max_open` files assemble at once, holding at most `max_held_bytes` together: the oldest incomplete
  one is dropped to make room, and said.
Each refusal is counted by reason (`refused`) and printed.
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from station.paths import inside

MIB = 1024 * 1024
MAX_CHUNK_BYTES = 16 * MIB  # the upper limit of a unit's broker.chunk_bytes (agent/config.py)


@dataclass(frozen=True)
class MediaLimits:
    max_file_bytes: int = 256 * MIB   # one clip or snapshot (a unit's clips are tens of MB)
    max_open: int = 32                # files assembling at once
    early_chunks: int = 8             # chunks of one file held before its manifest arrives
    max_held_bytes: int = 512 * MIB   # chunks held by all the files assembling, together
    max_kept_bytes: int = 256 * MIB   # finished files kept in memory when not saved (the newest ones)


@dataclass
class MediaFile:
    device_id: str
    event_id: str
    name: str
    path: Path | None      # where it was saved (None when the monitor has no out_dir)
    size: int
    sha256: str            # of the bytes received
    expected_sha256: str   # from the manifest
    verified: bool
    data: bytes | None = None  # kept only when not saved to disk, and only the newest max_kept_bytes of them


@dataclass
class _Assembly:
    manifest: dict | None = None
    chunks: dict[int, bytes] = field(default_factory=dict)
    held: int = 0  # bytes in chunks


Key = tuple[str, str, str]  # device, event id, name


def manifest_problem(manifest: dict, limits: MediaLimits) -> str | None:
    """Why a (contract-valid) manifest cannot be assembled within the station's bounds; None when it can."""
    total, size, count = manifest["total_bytes"], manifest["chunk_bytes"], manifest["chunks"]
    if total > limits.max_file_bytes:
        return f"announces {total} B, more than the {limits.max_file_bytes} B a file may have here"
    if size > MAX_CHUNK_BYTES:
        return f"announces chunks of {size} B, more than the {MAX_CHUNK_BYTES} B a unit sends"
    if count != -(-total // size):
        return f"announces {count} chunks, but {total} B in chunks of {size} B are {-(-total // size)}"
    return None


def chunk_allowance(manifest: dict, index: int) -> int:
    """The most bytes chunk `index` may hold: a whole chunk, or what is left of the file for the last one."""
    return min(manifest["chunk_bytes"], manifest["total_bytes"] - index * manifest["chunk_bytes"])


class MediaAssembler:
    def __init__(self, out_dir: Path | None, problem: Callable[[str], None], announce: Callable[..., None],
                 limits: MediaLimits = MediaLimits()) -> None:
        """problem(text): a refusal said; announce(kind, device, text, **fields): a finished file said."""
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.limits = limits
        self.media: dict[tuple[str, str], MediaFile] = {}
        self.refused: collections.Counter[str] = collections.Counter()  # reason -> count
        self._problem, self._announce = problem, announce
        self._assemblies: dict[Key, _Assembly] = {}  # oldest first
        self._held = 0  # bytes in every assembly's chunks
        self._kept = 0  # bytes of finished files kept in memory

    @property
    def open(self) -> int:
        return len(self._assemblies)

    @property
    def held_bytes(self) -> int:
        return self._held

    def manifest(self, key: Key, manifest: dict) -> None:
        done = self.media.get(key[1:])
        if done is not None and done.expected_sha256 == manifest["sha256"]:
            return  # resent after a reconnect; already assembled
        if problem := manifest_problem(manifest, self.limits):
            self._refuse("manifest", key, f"manifest {problem}")
            return
        assembly = self._open(key)
        assembly.manifest = manifest
        for index in sorted(assembly.chunks):  # those that came early, now measured against the manifest
            if reason := self._chunk_problem(assembly, index, len(assembly.chunks[index])):
                self._release(assembly, index)
                self._refuse(reason[0], key, reason[1])
        self._try_assemble(key, assembly)

    def chunk(self, key: Key, part: str, payload: bytes) -> None:
        assembly = self._assemblies.get(key)
        if key[1:] in self.media and (assembly is None or assembly.manifest is None):
            return  # late duplicate chunk of a file already assembled
        if not (part.isascii() and part.isdigit() and len(part) <= 9):
            self._refuse("part", key, f"part {part[:20]!r} is not a chunk index")
            return
        index = int(part)
        probe = assembly or _Assembly()
        if reason := self._chunk_problem(probe, index, len(payload)):
            self._refuse(reason[0], key, reason[1])
            return
        assembly = assembly or self._open(key)
        if not self._make_room(len(payload) - len(assembly.chunks.get(index, b"")), keep=key):
            self._refuse("memory", key, f"chunk {index} ({len(payload)} B) does not fit in the "
                                        f"{self.limits.max_held_bytes} B held for files being assembled")
            if not assembly.chunks and assembly.manifest is None:
                del self._assemblies[key]
            return
        self._release(assembly, index)
        assembly.chunks[index] = bytes(payload)
        assembly.held += len(payload)
        self._held += len(payload)
        self._try_assemble(key, assembly)

    # ---- bounds -------------------------------------------------------------------------------------------

    def _chunk_problem(self, assembly: _Assembly, index: int, size: int) -> tuple[str, str] | None:
        """(reason, text) when chunk `index` of `size` bytes may not be held by this assembly."""
        manifest = assembly.manifest
        if manifest is None:
            if index not in assembly.chunks and len(assembly.chunks) >= self.limits.early_chunks:
                return "early", f"chunk {index}: already {self.limits.early_chunks} chunks held before the manifest"
            if size > MAX_CHUNK_BYTES:
                return "chunk size", f"chunk {index} has {size} B, more than the {MAX_CHUNK_BYTES} B a unit sends"
            return None
        if index >= manifest["chunks"]:
            return "part", f"part {index} outside 0..{manifest['chunks'] - 1} (the manifest's chunks)"
        if size > (allowed := chunk_allowance(manifest, index)):  # allowances add up to total_bytes, no more
            return "chunk size", f"chunk {index} has {size} B, the manifest allows {allowed} B"
        return None

    def _open(self, key: Key) -> _Assembly:
        if key not in self._assemblies:
            while len(self._assemblies) >= self.limits.max_open:
                self._drop(next(iter(self._assemblies)), f"more than {self.limits.max_open} files assembling")
            self._assemblies[key] = _Assembly()
        return self._assemblies[key]

    def _make_room(self, extra: int, keep: Key) -> bool:
        """Drop the oldest incomplete files (not `keep`) until `extra` more bytes fit; False if they cannot."""
        while self._held + extra > self.limits.max_held_bytes:
            oldest = next((key for key in self._assemblies if key != keep), None)
            if oldest is None:
                return False
            self._drop(oldest, f"{self.limits.max_held_bytes} B held by files being assembled")
        return True

    def _drop(self, key: Key, why: str) -> None:
        assembly = self._assemblies.pop(key)
        self._held -= assembly.held
        wanted = assembly.manifest["chunks"] if assembly.manifest else "?"
        self._refuse("dropped", key, f"dropped incomplete ({len(assembly.chunks)} of {wanted} chunks, "
                                     f"{assembly.held} B): {why}")

    def _release(self, assembly: _Assembly, index: int) -> None:
        old = assembly.chunks.pop(index, None)
        if old is not None:
            assembly.held -= len(old)
            self._held -= len(old)

    def _refuse(self, reason: str, key: Key, text: str) -> None:
        self.refused[reason] += 1
        device, event_id, name = key
        self._problem(f"[{device}] media {event_id}/{name}: {text}")

    # ---- the whole file -----------------------------------------------------------------------------------

    def _try_assemble(self, key: Key, assembly: _Assembly) -> None:
        manifest = assembly.manifest
        if manifest is None or len(assembly.chunks) < manifest["chunks"]:
            return  # every index held is below chunks: as many as chunks means all of them
        device, event_id, name = key
        data = b"".join(assembly.chunks[i] for i in range(manifest["chunks"]))
        del self._assemblies[key]
        self._held -= assembly.held
        digest = hashlib.sha256(data).hexdigest()
        verified = digest == manifest["sha256"] and len(data) == manifest["total_bytes"]
        path = self._save(key, data)
        self.media[(event_id, name)] = MediaFile(device, event_id, name, path, len(data), digest,
                                                 manifest["sha256"], verified, None if path else data)
        if path is None:
            self._keep_newest(len(data))
        verdict = "VERIFIED" if verified else (f"MISMATCH (expected {manifest['total_bytes']} B "
                                               f"sha256 {manifest['sha256']})")
        where = f" -> {path}" if path else ""
        self._announce("media", device, f"[{device}] MEDIA {event_id}/{name} {len(data)} B sha256={digest} "
                                        f"{verdict}{where}",
                       media={"event_id": event_id, "name": name, "bytes": len(data), "sha256": digest,
                              "verified": verified, "path": str(path) if path else None})

    def _save(self, key: Key, data: bytes) -> Path | None:
        if self.out_dir is None:
            return None
        path = inside(self.out_dir, *key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def _keep_newest(self, added: int) -> None:
        """Finished files kept in memory (no out folder) stay within max_kept_bytes: the oldest are let go."""
        self._kept += added
        for media in self.media.values():
            if self._kept <= self.limits.max_kept_bytes:
                return
            if media.data is not None:
                self._kept -= len(media.data)
                media.data = None
