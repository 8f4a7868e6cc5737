"""bench/page_cache.py: the memory benches drop the environment's shared objects from the page cache before each
measured process, so the figure is the one a booted unit has (see the module's docstring for why it matters)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy

from bench.page_cache import drop_from_page_cache, library_files


def test_the_libraries_the_agent_maps_are_in_the_list():
    names = {path.name for path in library_files()}
    assert any(name.startswith("cv2.") for name in names)       # OpenCV's extension module
    assert Path(cv2.__file__).parent in {path.parent for path in library_files()}
    assert any(name.startswith("libavcodec") for name in names)  # FFmpeg, bundled by opencv and PyAV wheels
    numpy_root = Path(numpy.__file__).parent
    assert any(path.is_relative_to(numpy_root) for path in library_files())
    assert all(".so" in path.name for path in library_files())   # no Python sources, no data files


def test_dropping_asks_for_every_file_there_and_skips_one_gone(tmp_path):
    present = tmp_path / "libpresent.so.1"
    present.write_bytes(b"\x7fELF" + bytes(4096))
    assert drop_from_page_cache([present, tmp_path / "libgone.so"]) == 1
    assert present.read_bytes()[:4] == b"\x7fELF"  # dropping cached pages never touches the file's content
