"""Media reassembly against a hostile publisher: every chunk, manifest and count the station holds is bounded by
its own limits, each refusal counted and said, and a genuine file still assembles beside the attack."""

from __future__ import annotations

import hashlib
import os

from station.media_assembly import MAX_CHUNK_BYTES, MediaAssembler, MediaLimits


def manifest_for(data: bytes, chunk: int, **changes) -> dict:
    count = -(-len(data) // chunk)
    return {"event_id": "e1", "name": "clip.mp4", "content_type": "video/mp4", "total_bytes": len(data),
            "chunk_bytes": chunk, "chunks": count, "sha256": hashlib.sha256(data).hexdigest(), **changes}


def chunks_of(data: bytes, chunk: int) -> list[bytes]:
    return [data[i:i + chunk] for i in range(0, len(data), chunk)]


class Station:
    """An assembler with what it says collected."""

    def __init__(self, out_dir=None, **limits) -> None:
        self.problems: list[str] = []
        self.said: list[str] = []
        self.assembler = MediaAssembler(out_dir, self.problems.append,
                                        lambda kind, device, text, **fields: self.said.append(text),
                                        MediaLimits(**limits))

    def send(self, key, data: bytes, chunk: int, **changes) -> None:
        self.assembler.manifest(key, manifest_for(data, chunk, **changes))
        for index, piece in enumerate(chunks_of(data, chunk)):
            self.assembler.chunk(key, str(index), piece)


KEY = ("unit-9", "e1", "clip.mp4")


def test_a_part_outside_the_manifest_or_not_a_number_is_refused_and_the_file_still_assembles():
    station, data = Station(), os.urandom(10_000)
    station.assembler.manifest(KEY, manifest_for(data, 4096))
    for part in ("3", "999999999", "-1", "1e9", "0x10", "٣"):  # 3 chunks: 0..2; the last is an Arabic-Indic 3
        station.assembler.chunk(KEY, part, b"x" * 10)
    assert station.assembler.refused == {"part": 6} and station.assembler.held_bytes == 0
    assert any("part 3 outside 0..2" in problem for problem in station.problems)
    assert any("'-1' is not a chunk index" in problem for problem in station.problems)
    for index, piece in enumerate(chunks_of(data, 4096)):
        station.assembler.chunk(KEY, str(index), piece)
    assert station.assembler.media[("e1", "clip.mp4")].verified and station.assembler.open == 0


def test_a_chunk_larger_than_its_place_allows_is_refused_so_a_file_never_holds_more_than_total_bytes():
    station, data = Station(), os.urandom(10_000)
    station.assembler.manifest(KEY, manifest_for(data, 4096))
    station.assembler.chunk(KEY, "0", os.urandom(4097))
    station.assembler.chunk(KEY, "2", os.urandom(10_000 - 2 * 4096 + 1))  # the last one: only what is left
    assert station.assembler.refused == {"chunk size": 2} and station.assembler.held_bytes == 0
    assert any("chunk 2 has 1809 B, the manifest allows 1808 B" in problem for problem in station.problems)
    station.assembler.chunk(KEY, "1", data[4096:8192])
    station.assembler.chunk(KEY, "1", data[4096:8192])  # a resend replaces, not adds
    assert station.assembler.held_bytes == 4096


def test_a_manifest_beyond_the_stations_bounds_or_inconsistent_is_refused():
    station = Station(max_file_bytes=1_000_000)
    base = manifest_for(b"", 1024)
    station.assembler.manifest(KEY, {**base, "total_bytes": 10**12, "chunks": 10**12 // 1024 + 1})
    station.assembler.manifest(KEY, {**base, "total_bytes": 900_000, "chunk_bytes": 2 * MAX_CHUNK_BYTES, "chunks": 1})
    station.assembler.manifest(KEY, {**base, "total_bytes": 5000, "chunks": 10**9})  # count does not fit sizes
    assert station.assembler.refused == {"manifest": 3} and station.assembler.open == 0
    assert any("more than the 1000000 B a file may have" in problem for problem in station.problems)
    assert any(f"more than the {MAX_CHUNK_BYTES} B a unit sends" in problem for problem in station.problems)
    assert any("announces 1000000000 chunks, but 5000 B in chunks of 1024 B are 5" in problem
               for problem in station.problems)


def test_chunks_before_their_manifest_are_held_only_up_to_the_cap_then_measured_against_it():
    station, data = Station(early_chunks=2), os.urandom(5000)
    station.assembler.chunk(KEY, "4", data[4096:])
    station.assembler.chunk(KEY, "3", b"y" * 2000)  # larger than its place once the manifest says 1024 B chunks
    station.assembler.chunk(KEY, "0", data[:1024])  # a third one: over the cap
    station.assembler.chunk(KEY, "1", os.urandom(MAX_CHUNK_BYTES + 1))
    assert station.assembler.refused == {"early": 2} and station.assembler.held_bytes == 904 + 2000
    station.assembler.manifest(KEY, manifest_for(data, 1024))
    assert station.assembler.refused == {"early": 2, "chunk size": 1}  # chunk 3 re-measured and let go
    assert station.assembler.held_bytes == 904
    station.send(KEY, data, 1024)
    assert station.assembler.media[("e1", "clip.mp4")].verified


def test_open_assemblies_are_capped_and_the_oldest_incomplete_one_is_dropped_and_said():
    station = Station(max_open=3)
    for number in range(5):
        station.assembler.chunk(("unit-9", f"e{number}", "clip.mp4"), "0", b"z" * 100)
    assert station.assembler.open == 3 and station.assembler.refused == {"dropped": 2}
    assert station.assembler.held_bytes == 300
    dropped = [problem for problem in station.problems if "dropped incomplete" in problem]
    assert [problem.split()[2] for problem in dropped] == ["e0/clip.mp4:", "e1/clip.mp4:"]
    assert "more than 3 files assembling" in dropped[0]


def test_bytes_held_by_all_assemblies_together_are_capped():
    station = Station(max_held_bytes=10_000)
    big = os.urandom(12_000)
    station.assembler.manifest(("unit-9", "old", "clip.mp4"), manifest_for(big, 4000))
    station.assembler.chunk(("unit-9", "old", "clip.mp4"), "0", big[:4000])
    station.assembler.chunk(("unit-9", "old", "clip.mp4"), "1", big[4000:8000])
    data = os.urandom(8000)
    station.send(KEY, data, 4000)  # needs room: the older incomplete file goes
    assert station.assembler.refused == {"dropped": 1} and station.assembler.media[("e1", "clip.mp4")].verified
    alone = ("unit-9", "huge", "clip.mp4")
    station.assembler.manifest(alone, manifest_for(big, 4000))
    for index, piece in enumerate(chunks_of(big, 4000)):
        station.assembler.chunk(alone, str(index), piece)
    assert station.assembler.refused["memory"] == 1 and station.assembler.held_bytes == 8000
    assert any("does not fit in the 10000 B held" in problem for problem in station.problems)


def test_late_duplicates_of_a_finished_file_leave_nothing_open():
    station, data = Station(), os.urandom(3000)
    station.send(KEY, data, 1024)
    station.assembler.chunk(KEY, "1", data[1024:2048])
    station.assembler.chunk(KEY, "7", b"late")
    station.assembler.manifest(KEY, manifest_for(data, 1024))
    assert station.assembler.open == 0 and station.assembler.held_bytes == 0
    assert len(station.said) == 1 and "VERIFIED" in station.said[0]


def test_finished_files_kept_in_memory_are_bounded_and_saved_ones_land_inside_out(tmp_path):
    station = Station(max_kept_bytes=5000)
    for number in range(4):
        station.send(("unit-9", f"e{number}", "clip.mp4"), os.urandom(2000), 1000)
    kept = [event for (event, _), media in station.assembler.media.items() if media.data is not None]
    assert kept == ["e2", "e3"] and all(media.verified for media in station.assembler.media.values())
    saved = Station(tmp_path / "out")
    data = os.urandom(1500)
    saved.send(("..", "../x", "clip.mp4"), data, 1000)
    assert (tmp_path / "out" / "_" / "_x" / "clip.mp4").read_bytes() == data
