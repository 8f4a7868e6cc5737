"""Fast downscaling of a grey image to the detection width.

cv2.INTER_AREA is exact box averaging but its generic (non-2x) path is slow (~0.4 ms for 1280x720 -> 320x180 on a
small core). An exact halving is the same 2x2 box average whether done by INTER_AREA or INTER_LINEAR (which samples
between the four pixels), and INTER_LINEAR's path is ~20 % faster on a cache-cold frame, so we halve with it while
the image is at least twice the target, then finish with one INTER_AREA.
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
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * out_h:
        half = (image.shape[1] // 2, image.shape[0] // 2)
        exact = image.shape[1] == 2 * half[0] and image.shape[0] == 2 * half[1]
        image = cv2.resize(image, half, interpolation=cv2.INTER_LINEAR if exact else cv2.INTER_AREA)
    if image.shape[1] != width or image.shape[0] != out_h:
        image = cv2.resize(image, (width, out_h), interpolation=cv2.INTER_AREA)
    return image
