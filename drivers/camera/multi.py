"""N fixed cameras around the pole read as one camera: each frame carries their images side by side.

The order is the panorama's camera order, so the strip builder (models.panorama.MultiPanorama) can split the
detection image back into one image per camera. A recording of the unit is the same side-by-side picture.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from common.errors import SourceError
from drivers.camera.base import Camera, Frame


class MultiCamera(Camera):
    def __init__(self, cameras: list[Camera], names: list[str]) -> None:
        if not cameras or len(cameras) != len(names):
            raise SourceError("a multi-camera source needs one name per camera and at least one camera")
        self.cameras, self.names = cameras, names
        self.live = any(camera.live for camera in cameras)
        self.fps = min(camera.fps for camera in cameras)

    def open(self) -> None:
        opened: list[Camera] = []
        try:
            for camera in self.cameras:
                camera.open()
                opened.append(camera)
        except Exception:
            for camera in opened:
                camera.close()
            raise
        self.fps = min(camera.fps for camera in self.cameras)
        counts = [camera.frame_count for camera in self.cameras if camera.frame_count]
        self.frame_count = min(counts) if len(counts) == len(self.cameras) else None

    def frames(self) -> Iterator[Frame]:
        streams = [camera.frames() for camera in self.cameras]
        for index, parts in enumerate(zip(*streams, strict=False)):  # ends with the first camera to end
            yield Frame(ts=parts[0].ts, index=index, image=self._join([p.image for p in parts], "image"),
                        luma=self._join([p.luma for p in parts], "detection image"))
            del parts   # not held while the next frames are captured (see FrameLoop._stream)

    def _join(self, images: list[np.ndarray], what: str) -> np.ndarray:
        shapes = {image.shape for image in images}
        if len(shapes) != 1:
            sizes = ", ".join(f"{name} {image.shape[1]}x{image.shape[0]}" for name, image in zip(self.names, images,
                                                                                                 strict=True))
            raise SourceError(f"multi-camera {what}s must all be the same size: {sizes}")
        return np.hstack(images)

    def close(self) -> None:
        for camera in self.cameras:
            camera.close()
