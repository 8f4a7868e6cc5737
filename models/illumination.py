"""Light-change compensation: the tone line that maps the background's grey levels to this frame's.

A change of light (cloud, exposure or gain step, IR illuminator switching on) moves every grey level of the
scene along one line (a gain, plus an offset for an IR illuminator); an object changes only its own pixels. The
line is estimated from a sparse grid of pixels that were background in the previous frame: for each band of
background grey levels the median of the frame's values there, then a weighted fit through the band medians that
drops the bands it misses (a person covering most of one band). When the light moved by more than the noise
margin and the line explains the change, the frame is compared with the background seen through it, so a gain
change is not foreground and nothing has to be re-learnt.

Right after the view was re-learnt (lights switched on in a dark room) the light often goes on moving unevenly for a
second (tubes warming up one after another, the exposure catching up), which no one line explains: the background is
then seen through a local gain, the median ratio of frame to background in cells of the image (local_gain), when the
light moved in most of them (in steady light what differs is an object, however large).

Pure: arrays in, arrays out.
"""

from __future__ import annotations

import cv2
import numpy as np

#: sampling step of the estimation grid (every STEP-th row and column: ~3600 pixels at 320x180)
STEP = 4
#: background grey levels per band (16 bands), and the fewest samples a band needs to give a median
BAND_SHIFT = 4
MIN_SAMPLES = 12
#: grey levels a band's median must move before the light counts as changed (below it: plain difference, so
#: steady scenes behave exactly as without compensation)
MARGIN = 3.0
#: share of stable samples that must differ from the plain background before a curve is worth applying
EXPLAIN_SHARE = 0.02
#: most stable samples still differing through the fitted line for it to count as the explanation (another view
#: of a similar scene is halved by a flat line through its mean, but far from explained)
RESIDUAL_SHARE = 0.1
#: the fitted gain is kept within these bounds
GAIN_RANGE = (0.25, 4.0)

_LEVELS = np.arange(256, dtype=np.float32)


def tone_curve(frame: np.ndarray, background: np.ndarray, foreground: np.ndarray | None,
               tolerance: float) -> np.ndarray | None:
    """uint8 look-up table (256) mapping background grey levels to the frame's, or None when the light is as the
    background learnt it (no band moved by more than MARGIN) or the curve does not explain the change.

    A person who covers most of one band (a bright shirt against a dark room) drags that band's median; the
    curve is used only when it leaves a third of the stable samples that differ by more than `tolerance`, and at
    most RESIDUAL_SHARE of all, which a light change does and such a drag or another view does not."""
    bg = background[::STEP, ::STEP].ravel()
    now = frame[::STEP, ::STEP].ravel()
    if foreground is not None:
        stable = foreground[::STEP, ::STEP].ravel() == 0
        bg, now = bg[stable], now[stable]
    if bg.size < 4 * MIN_SAMPLES:
        return None
    band = (bg >> BAND_SHIFT).astype(np.int32)
    keys = np.sort(band * 256 + now.astype(np.int32))
    counts = np.bincount(band, minlength=256 >> BAND_SHIFT)
    starts = np.cumsum(counts) - counts
    valid = counts >= MIN_SAMPLES
    if np.count_nonzero(valid) < 2:
        return None
    medians = (keys[(starts + counts // 2)[valid]] & 255).astype(np.float32)
    centres = (np.bincount(band, weights=bg, minlength=counts.size)[valid] / counts[valid]).astype(np.float32)
    medians = np.maximum.accumulate(medians)  # light changes keep the order of grey levels
    if float(np.abs(medians - centres).max()) <= MARGIN:
        return None
    curve = _fit(centres, medians, counts[valid].astype(np.float32), tolerance)
    plain = np.count_nonzero(np.abs(now.astype(np.int16) - bg) > tolerance)
    through = np.count_nonzero(np.abs(now.astype(np.int16) - curve[bg]) > tolerance)
    explains = plain >= EXPLAIN_SHARE * bg.size and 3 * through < plain and through <= RESIDUAL_SHARE * bg.size
    return curve if explains else None


def _fit(centres: np.ndarray, medians: np.ndarray, weights: np.ndarray, tolerance: float) -> np.ndarray:
    """Gain and offset (frame = gain x background + offset) through the band medians, weighted by their samples,
    refitted once without the bands it misses by more than `tolerance`: a light change moves all bands along one
    line (a gain, or a gain and an offset for an IR illuminator), a person dragging one band's median does not."""
    keep = np.ones(centres.size, bool)
    for _ in range(2):
        gain, offset = np.polyfit(centres[keep], medians[keep], 1, w=np.sqrt(weights[keep]))
        misses = np.abs(gain * centres + offset - medians) > tolerance
        if np.count_nonzero(~misses) < 2 or not misses[keep].any():
            break
        keep = ~misses
    gain = float(np.clip(gain, *GAIN_RANGE))
    return np.clip(gain * _LEVELS + offset, 0, 255).round().astype(np.uint8)


def compensated(background8: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """The background as it looks under this frame's light."""
    return cv2.LUT(background8, curve)


#: side of the cells the local light is estimated in, as a share of the image height: small enough to follow a lamp
#: lighting one side of a room first, large enough that a person walking through covers less than half of one
LOCAL_SHARE = 0.125
#: the local light is estimated on every LOCAL_STEP-th row and column; a cell needs this share of its samples
#: (not foreground last frame) to give its own gain, else it takes the median gain of the whole view
LOCAL_STEP = 2
LOCAL_MIN_SHARE = 0.25
#: relative gain by which the light must have moved in most cells to count as changed (a cell's median ratio is
#: steady to ~1 % in steady light; 3 % is 4-6 grey levels on a lit wall): below it the light is steady and what
#: differs is an object, however large (a person at the camera fills many cells, never most of them)
LOCAL_MARGIN = 0.03


def local_gain(frame: np.ndarray, background8: np.ndarray, foreground: np.ndarray | None) -> np.ndarray | None:
    """float32 gain per pixel (frame ~ gain x background) where the light changed unevenly (tubes warming up one
    after another, a lamp lighting one side, exposure settling), or None when it did not move by LOCAL_MARGIN in
    most of the view: the median of frame / background over each cell's pixels that were not foreground last frame,
    interpolated between cell centres. A median, not a ratio of sums: a dark person stepping onto a bright wall must
    not darken the wall around them (which would then be foreground itself), and does not until they cover half a
    cell."""
    height, width = frame.shape
    ratio = ((frame[::LOCAL_STEP, ::LOCAL_STEP].astype(np.float32) + 1.0)
             / (background8[::LOCAL_STEP, ::LOCAL_STEP].astype(np.float32) + 1.0))
    if foreground is not None:
        ratio[foreground[::LOCAL_STEP, ::LOCAL_STEP] > 0] = np.nan
    cell = max(2, int(round(LOCAL_SHARE * height / LOCAL_STEP)))
    rows, cols = -(-ratio.shape[0] // cell), -(-ratio.shape[1] // cell)
    padded = np.full((rows * cell, cols * cell), np.nan, np.float32)
    padded[:ratio.shape[0], :ratio.shape[1]] = ratio
    samples = np.sort(padded.reshape(rows, cell, cols, cell).transpose(0, 2, 1, 3).reshape(rows, cols, -1), axis=2)
    counts = np.count_nonzero(~np.isnan(samples), axis=2)  # (NaN sorts last)
    medians = np.take_along_axis(samples, np.maximum(counts - 1, 0)[..., None] // 2, axis=2)[..., 0]
    # a cell cut off by the image's edge needs the share of what it holds of the image
    inside = np.outer(_cell_sizes(ratio.shape[0], cell, rows), _cell_sizes(ratio.shape[1], cell, cols))
    sampled = counts >= LOCAL_MIN_SHARE * inside
    if not sampled.any() or float(np.median(np.abs(medians[sampled] - 1.0))) <= LOCAL_MARGIN:
        return None
    overall = float(np.median(medians[sampled]))  # (of the cells, not of all samples: 6x cheaper)
    medians = np.clip(np.where(sampled, medians, overall), *GAIN_RANGE)
    full = cv2.resize(medians, (cols * cell * LOCAL_STEP, rows * cell * LOCAL_STEP), interpolation=cv2.INTER_LINEAR)
    return full[:height, :width]


def _cell_sizes(length: int, cell: int, cells: int) -> np.ndarray:
    sizes = np.full(cells, cell)
    sizes[-1] = length - cell * (cells - 1)
    return sizes


def locally_compensated(frame: np.ndarray, background8: np.ndarray,
                        foreground: np.ndarray | None) -> np.ndarray | None:
    """The background as it looks under this frame's uneven light, or None when the light is steady (local_gain)."""
    gain = local_gain(frame, background8, foreground)
    return None if gain is None else cv2.convertScaleAbs(cv2.multiply(background8, gain, dtype=cv2.CV_32F))
