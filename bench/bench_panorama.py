"""Cost of the 360° unwrap: building the remap tables once, and the per-frame remap at detection size and at
recording size, plus mapping one strip box back (bearing, sectors, source-image box).

Uses a real 2048x2048 CEPDOF fisheye frame from ../shared/data when present, otherwise a noise image.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.camera.base import make_luma  # noqa: E402
from models.motion import Box  # noqa: E402
from models.panorama import FisheyePanorama, MultiPanorama, PanoramaSettings, scaled_strip_size  # noqa: E402

FISHEYE = (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "10_fisheye_cepdof_sample_indoor"
           / "video_0" / "Lunch3_000001.jpg")
DETECT_WIDTH = 320


def per_call_ms(function, repeats: int) -> float:
    """Median wall time of one call, in milliseconds (one warm-up call first)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def source_image() -> tuple[np.ndarray, str]:
    image = cv2.imread(str(FISHEYE)) if FISHEYE.is_file() else None
    if image is not None:
        return image, f"CEPDOF {FISHEYE.name}"
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, (2048, 2048, 3), dtype=np.uint8), "noise (CEPDOF sample not found)"


def bench_fisheye(image: np.ndarray) -> None:
    settings = PanoramaSettings(enabled=True, sectors=({"name": "all", "start_deg": 0, "end_deg": 360},))
    luma = make_luma(image, DETECT_WIDTH)
    build_small = per_call_ms(lambda: FisheyePanorama(settings, (luma.shape[1], luma.shape[0])), 5)
    small = FisheyePanorama(settings, (luma.shape[1], luma.shape[0]))
    print(f"detection: luma {luma.shape[1]}x{luma.shape[0]} -> strip {small.strip_size[0]}x{small.strip_size[1]}"
          f"  maps {build_small:.1f} ms once, unwrap {per_call_ms(lambda: small.unwrap(luma), 200):.3f} ms/frame")
    box = Box(100, 40, 24, 60, 900)
    print(f"locate one box (bearing, sectors, source box): {per_call_ms(lambda: small.locate(box), 500) * 1000:.0f} us")
    for width in (1280, image.shape[1]):
        frame = cv2.resize(image, (width, width), interpolation=cv2.INTER_AREA) if width != image.shape[1] else image
        strip_size = scaled_strip_size(small, width / luma.shape[1])
        started = time.perf_counter()
        big = FisheyePanorama(settings, (width, width), strip_size)
        build_ms = (time.perf_counter() - started) * 1000.0
        unwrap_ms = per_call_ms(lambda big=big, frame=frame: big.unwrap(frame), 20)
        print(f"recording: BGR {width}x{width} -> strip {big.strip_size[0]}x{big.strip_size[1]}"
              f"  maps {build_ms:.0f} ms once, unwrap {unwrap_ms:.2f} ms/frame")


def bench_multi() -> None:
    cameras = [{"name": f"cam{i}", "yaw_deg": 90 * i, "hfov_deg": 90} for i in range(4)]
    settings = PanoramaSettings(enabled=True, kind="multi", cameras=cameras, strip_width=1280)
    panorama = MultiPanorama(settings, (320, 240))
    lumas = [np.full((240, 320), 100, np.uint8) for _ in cameras]
    print(f"multi: 4 x 320x240 luma -> strip {panorama.strip_size[0]}x{panorama.strip_size[1]}"
          f"  unwrap {per_call_ms(lambda: panorama.unwrap(lumas), 200):.3f} ms/frame")


def bench_live_view(image: np.ndarray) -> None:
    """The commissioning page's 360° picture: the colour frame downscaled, unwrapped at the live view's width and
    JPEG-encoded, paid only for frames the page is shown (a few a second, only while somebody watches)."""
    from models.panorama import PanoramaView
    from web.panorama_view import PanoramaPicture

    view = PanoramaView(PanoramaSettings(enabled=True))
    view.unwrap(make_luma(image, DETECT_WIDTH))  # the analyzer's first frame builds the detection panorama
    live = PanoramaPicture(view, 640)
    strip = live.picture(image)

    def shown() -> None:
        cv2.imencode(".jpg", live.picture(image), [cv2.IMWRITE_JPEG_QUALITY, 70])

    print(f"live view: BGR {image.shape[1]}x{image.shape[0]} -> strip {strip.shape[1]}x{strip.shape[0]} + JPEG"
          f"  {per_call_ms(shown, 30):.2f} ms per shown frame (4 fps while watched, nothing otherwise)")


def main() -> None:
    image, origin = source_image()
    print(f"panorama unwrap (cv2.remap, fixed-point maps, bilinear); source: {origin}; "
          f"OpenCV threads: {cv2.getNumThreads()}")
    bench_fisheye(image)
    bench_multi()
    bench_live_view(image)


if __name__ == "__main__":
    main()
