"""Fast downscaling of a grey image to the detection width.

cv2.INTER_AREA is exact box averaging but its generic (non-2x) path is slow (~0.4 ms for 1280x720 -> 320x180 on a
small core). An exact halving is the same 2x2 box average whether done by INTER_AREA or INTER_LINEAR (which samples
between the four pixels), and INTER_LINEAR's path is ~20 % faster on a cache-cold frame, so we halve with it while
the image is at least twice the target, then finish with one INTER_AREA.

A frame fresh from the decoder or the camera is not in the CPU's caches, and the halving's loop waits on memory:
at 1280x720 it took 165-205 us of thread time on the cold frame against 35-45 us on the same frame in cache. A
plain sequential read (cv2.sumElems: the core keeps many loads in flight and the prefetcher streams) brings the
frame into cache at memory speed, ~40 us, so reading it once first and halving it from cache costs 85-110 us in
all (bench/side_by_side.py's footage, one OpenCV thread, machine load 1-3.5); at 640x360 50-56 us became
24-27. The result is the same bytes. It pays in the replay path too, where the BGR conversion has read the frame
just before (370 us for BGR + luma per frame against 465-520).
"""

from __future__ import annotations

import cv2
import numpy as np


def downscale(grey: np.ndarray, width: int) -> np.ndarray:
    """Grey uint8 image scaled to `width` pixels wide (aspect kept); never upscales."""
    if grey.ndim != 2:
        raise ValueError(f"downscale expects a 2-D grey image, got shape {grey.shape}")
    if width < 1:
        raise ValueError(f"downscale width must be >= 1, got {width}")
    height_px, width_px = grey.shape
    if width >= width_px:
        return np.ascontiguousarray(grey)
    out_h = max(1, round(height_px * width / width_px))
    image = grey
    if image.shape[1] >= 2 * width and image.shape[0] >= 2 * out_h:
        cv2.sumElems(image)  # value unused: the read brings a cold frame into cache (module notes)
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * out_h:
        half = (image.shape[1] // 2, image.shape[0] // 2)
        exact = image.shape[1] == 2 * half[0] and image.shape[0] == 2 * half[1]
        image = cv2.resize(image, half, interpolation=cv2.INTER_LINEAR if exact else cv2.INTER_AREA)
    if image.shape[1] != width or image.shape[0] != out_h:
        image = cv2.resize(image, (width, out_h), interpolation=cv2.INTER_AREA)
    return image
