"""The check both pooled cameras (replay, OpenCV) must pass: a frame kept, or only a view of one, keeps its pixels
while the camera reads on and lends its other buffers again."""

from __future__ import annotations

import numpy as np

from drivers.camera.buffers import POOL_KEEP


def address(image: np.ndarray) -> int:
    return image.__array_interface__["data"][0]


def assert_kept_frames_keep_their_pixels(frames, expected: list[np.ndarray], crop: tuple[slice, slice]) -> None:
    """Read `frames` through, keeping frame 3 (as an alarm keeps its first frame) and only a `crop` view of frame 5
    (as a crop would be); `expected` holds every frame's pixels as read without a pool."""
    held, corner, seen = None, None, []
    for frame in frames:
        seen.append(address(frame.image))
        if frame.index == 3:
            held = frame
        if frame.index == 5:
            corner = frame.image[crop]
        del frame
    assert np.array_equal(held.image, expected[3])
    assert np.array_equal(corner, expected[5][crop])
    # neither buffer was lent again while kept, and the frames let go went round a few buffers
    assert seen[3] not in seen[4:] and seen[5] not in seen[6:]
    assert len(set(seen)) <= POOL_KEEP
