"""Finishing a clip a kill or power cut left half-written: a fragmented MP4 is valid up to its last whole fragment.

The ClipWriter writes `clip.mp4.part` as a header (ftyp, moov) then one moof+mdat pair per fragment, fsynced as
each lands. After an abrupt stop the file ends somewhere in a fragment; cut at the end of the last whole one, it is
a complete, playable MP4 again. The cut is found from the top-level boxes' own sizes (8-byte headers: libavformat
refuses to open a file whose first fragment is cut and says nothing of where fragments end), then the result is
checked with PyAV: every packet whole, and its frames' duration read from the file itself.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from agent.storage.media import MediaFile, file_sha256, fsync_dir
from common.errors import StorageError

log = logging.getLogger(__name__)

PARTIAL_NAME = "clip.partial.mp4"  # a partial clip never takes a finished clip's name
_HEADER = struct.Struct(">I4s")
_LARGE = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class PartialClip:
    media: MediaFile
    duration_s: float   # first frame to the end of the last one, as the file's own timestamps say
    frames: int
    dropped_bytes: int  # what was cut off the end: the fragment the muxer was writing when the agent stopped


def top_level_boxes(path: Path) -> list[tuple[str, int, int]]:
    """(type, offset, size) of each whole top-level box, in order; stops at the first one cut short or malformed."""
    boxes = []
    total = path.stat().st_size
    with path.open("rb") as stream:
        offset = 0
        while offset + _HEADER.size <= total:
            stream.seek(offset)
            size, kind = _HEADER.unpack(stream.read(_HEADER.size))
            header = _HEADER.size
            if size == 1:  # a 64-bit size follows the type
                if offset + header + _LARGE.size > total:
                    break
                (size,) = _LARGE.unpack(stream.read(_LARGE.size))
                header += _LARGE.size
            if size < header or offset + size > total:  # size 0 ("to the end of file") is never whole in a .part
                break
            boxes.append((kind.decode("latin-1"), offset, size))
            offset += size
    return boxes


def complete_prefix(path: Path) -> int:
    """Bytes of the file that form a whole fragmented MP4: ftyp, moov, then whole moof+mdat pairs (0: none)."""
    boxes = top_level_boxes(path)
    kinds = [kind for kind, _, _ in boxes]
    if kinds[:2] != ["ftyp", "moov"]:
        return 0
    end = boxes[1][1] + boxes[1][2]
    for index in range(2, len(boxes) - 1):
        (kind, _, _), (following, offset, size) = boxes[index], boxes[index + 1]
        if kind == "moof" and following == "mdat":
            end = offset + size
    return end


def read_frames(path: Path) -> tuple[int, float]:
    """(frames, duration in s) of a clip from its packets; StorageError when a packet is cut or the file unreadable."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            first, end, frames = None, None, 0
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                if packet.is_corrupt:
                    raise StorageError(f"clip {path}: packet at byte {packet.pos} is cut short")
                frames += 1
                first = packet.pts if first is None else min(first, packet.pts)
                end = max(end or 0, packet.pts + (packet.duration or 0))
            if not frames:
                return 0, 0.0
            return frames, float((end - first) * stream.time_base)
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise StorageError(f"cannot read clip {path}: {exc}") from None


def clip_duration(path: Path) -> float | None:
    """Seconds of video in a finished clip; None when it cannot be told (a raw H.264 clip has no timestamps)."""
    if path.suffix != ".mp4":
        return None
    try:
        return round(read_frames(path)[1], 3)
    except StorageError as exc:
        log.warning("%s", exc)
        return None


def finish_partial(part: Path, final: Path) -> PartialClip | None:
    """Cut a killed clip's .part to its last whole fragment, fsync it and rename it to `final`; None (and the
    .part removed) when not one whole fragment was written. Done again after a kill in the middle, it gives the
    same file: the cut only removes what is not whole."""
    try:
        size = part.stat().st_size
        keep = complete_prefix(part)
        if keep:
            with part.open("r+b") as stream:
                stream.truncate(keep)
                os.fsync(stream.fileno())
            frames, duration = read_frames(part)
        else:
            frames, duration = 0, 0.0
        if not frames:
            log.warning("clip %s: no whole fragment was written before the agent stopped (%d bytes); removed",
                        part, size)
            part.unlink()
            return None
        os.replace(part, final)
        fsync_dir(final.parent)
        media = MediaFile(final.name, final, keep, file_sha256(final), "video/mp4")
    except OSError as exc:
        raise StorageError(f"cannot finish partial clip {part}: {exc.strerror or exc}") from None
    return PartialClip(media, round(duration, 3), frames, size - keep)
