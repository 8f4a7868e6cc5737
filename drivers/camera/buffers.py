"""Frame-sized arrays a capture writes into again once nothing holds them (issue 12).

A fresh 2.7 MiB array per 720p frame is a fresh mmap under the unit's fixed malloc threshold
(systemd/pid-agent.service), and its ~680 page faults cost more CPU than filling it.
"""

from __future__ import annotations

import sys

import numpy as np

#: images of one camera in use at once (the loop's frame, an alarm's first frame, a decoder's queue) whose
#: buffers are kept for reuse; beyond that a frame gets a fresh buffer, let go with it, so none stays resident
POOL_KEEP = 4


class ImagePool:
    """Arrays lent again only when the pool alone refers to one: whoever keeps a frame's pixels, through the
    frame, the array or a view of it (a view's base is the array), holds a reference, so a kept array is never
    written into. One thread takes from the pool; others may hold and let go of its arrays."""

    def __init__(self, keep: int = POOL_KEEP) -> None:
        self.keep = keep
        self._arrays: list[np.ndarray] = []
        self._probe = [np.empty(0, np.uint8)]   # held by nobody else: what "unheld" counts to, counted the same way

    def free(self) -> np.ndarray | None:
        """An array nobody else holds, or None (then the caller makes a new one and add()s it)."""
        unheld = sys.getrefcount(self._probe[0])
        for index in range(len(self._arrays)):
            if sys.getrefcount(self._arrays[index]) == unheld:
                return self._arrays[index]
        return None

    def add(self, array: np.ndarray) -> None:
        """Keep a new array for reuse, while fewer than `keep` are; one of another size starts the pool again."""
        if self._arrays and (array.shape, array.dtype) != (self._arrays[0].shape, self._arrays[0].dtype):
            self._arrays = []
        if len(self._arrays) < self.keep and not any(array is kept for kept in self._arrays):
            self._arrays.append(array)
