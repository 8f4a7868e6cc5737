"""A finished media file (clip or snapshot) and its hash: fsynced, renamed into place, fingerprinted once."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from common.errors import StorageError

#: clip file suffix -> content type (the software recorder writes mp4; an older picamera2 writes raw h264)
CLIP_CONTENT_TYPES = {"mp4": "video/mp4", "h264": "video/h264"}

_HASH_BLOCK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MediaFile:
    name: str
    path: Path
    size: int
    sha256: str
    content_type: str

    def describe(self) -> dict:
        return {"name": self.name, "bytes": self.size, "sha256": self.sha256}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(folder: Path) -> None:
    """Make a file's creation or rename in `folder` durable (a power cut otherwise may forget the name)."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def finalize(part: Path, final: Path, content_type: str) -> MediaFile:
    """fsync a finished .part file, rename it into place (durably) and fingerprint it."""
    try:
        with part.open("rb") as stream:
            os.fsync(stream.fileno())
        os.replace(part, final)
        fsync_dir(final.parent)
        return MediaFile(final.name, final, final.stat().st_size, file_sha256(final), content_type)
    except OSError as exc:
        raise StorageError(f"cannot finish {final}: {exc.strerror or exc}") from None
