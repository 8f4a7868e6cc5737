"""Blob tracking across frames: tells a travelling object from foliage or flicker that stays in place.

A blob that appears and moves about one spot (a swaying branch, a flickering screen) never gets far from where its
track began; a person or vehicle does. A track is *confirmed* once it has travelled `travel_px` from its origin
within a sensible time, and it counts as motion while it keeps moving (it stops counting after `still_s` at rest,
so a parked car or a moved chair does not hold an alarm open).

Pure: blob rectangles and frame times in, track states out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(slots=True)
class Trend:
    """Running sums of a least-squares line through a track's smoothed centroid against the time since its
    origin: how much of its movement a steady drift explains (`coherence`), at a constant cost per frame."""

    n: int = 0
    t: float = 0.0
    tt: float = 0.0
    x: float = 0.0
    y: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    xx: float = 0.0
    yy: float = 0.0

    def add(self, t: float, x: float, y: float) -> None:
        self.n += 1
        self.t += t
        self.tt += t * t
        self.x += x
        self.y += y
        self.tx += t * x
        self.ty += t * y
        self.xx += x * x
        self.yy += y * y

    def coherence(self) -> float:
        """How consistently the displacement grows with time (0-1). A straight line at constant speed must explain
        both the position's spread (R^2 of the fit, both axes together) and the displacement from the origin
        itself (R^2 of the fit through the origin: displacement proportional to time); the lesser counts.
        Someone walking, however slowly, is near 1 on both (only the box's one-pixel steps and flicker are left
        over). A swing fits the first until it turns back and, starting mid-swing, the second only until it
        passes back by its start; a blob jittering about one spot fits neither. A random walk (a blob whose
        fragments reshuffle) fits a line with R^2 of about a half on average, so coherence rises from 0 there to
        1 at R^2 = 1."""
        if self.n < 3:
            return 0.0
        stt = self.tt - self.t * self.t / self.n
        spread = (self.xx - self.x * self.x / self.n) + (self.yy - self.y * self.y / self.n)
        if stt <= 0.0 or spread <= 1e-9:
            return 0.0
        stx = self.tx - self.t * self.x / self.n
        sty = self.ty - self.t * self.y / self.n
        centred = (stx * stx + sty * sty) / (stt * spread)
        from_origin = (self.tx * self.tx + self.ty * self.ty) / (self.tt * (self.xx + self.yy))
        return max(0.0, 2.0 * min(1.0, centred, from_origin) - 1.0)


@dataclass(slots=True)
class Track:
    """One object followed over frames (positions in detection-image pixels, times in seconds)."""

    id: int
    born_ts: float
    origin: tuple[float, float]
    pos: tuple[float, float]
    size: float                 # sqrt of blob area: the object's scale
    origin_size: float          # size when travel started being counted
    last_ts: float
    hits: int = 1
    path: float = 0.0           # summed centroid steps (oscillation makes this long without getting far)
    far: float = 0.0            # greatest distance from the origin so far
    anchor: tuple[float, float] = (0.0, 0.0)
    anchor_ts: float = 0.0      # last time the track moved at least move_px from its anchor
    confirmed: bool = False
    velocity: tuple[float, float] = (0.0, 0.0)   # px per second, smoothed
    box: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    seen: bool = field(default=True)
    aspect: float = 0.0         # width / height of the object, smoothed (0 = not yet known); for classification
    origin_ts: float = 0.0      # when travel started being counted (start, or the last restart)
    edge: float = 0.0           # edge width in px, smoothed (0 = not yet measured); out of focus = near the lens
    smooth: tuple[float, float] | None = None  # centroid smoothed over frames: travel is measured on it
    expected_ts: float = 0.0    # last time it was found where its velocity predicted it (or its start)
    held: bool = False          # this frame it was found only where it was last seen (see Tracker._distance)
    trend: Trend = field(default_factory=Trend)  # line through its smoothed centroid since the origin

    def moving(self, ts: float, still_s: float) -> bool:
        """Whether it counts as motion: moved lately, and found this frame where its motion took it (a blob at the
        spot a fast object was last seen is as likely whatever it left behind there: swaying leaves)."""
        return not self.held and ts - self.anchor_ts <= still_s


@dataclass(frozen=True, slots=True)
class TrackerParams:
    travel_px: float        # net travel from the origin that confirms an object
    move_px: float          # smaller step that counts as "still moving" for a confirmed object
    gate_px: float          # largest centroid jump matched to an existing track
    max_gap_s: float        # a track unseen this long is dropped
    still_s: float          # a confirmed track at rest this long stops counting as motion
    min_hits: int           # frames a track must be seen before it can be confirmed
    min_straightness: float # net travel / path length needed to confirm (oscillation stays low)
    large_px: float = float("inf")  # a blob this big that holds its shape counts without travelling
    large_max_demand: float = 1.5   # ... unless it sits in a busy/agitated region
    max_growth: float = 1.8       # size change since the origin beyond which travel restarts
    max_area_ratio: float = 2.2  # larger frame-to-frame area change = a different blob, travel restarts
    box_margin: int = 0          # pixels the blob boxes are larger than the object (clean-up dilation)
    patient_s: float = float("inf")  # a track followed this long without a restart ...
    patient_share: float = 1.0       # ... needs only this share of its travel (slow, faint, coherent movers)


#: weight of a frame's centroid in the smoothed one (about 2 frames of lag)
SMOOTHING = 0.4
#: furthest ahead (s) an unconfirmed track's position is predicted from its velocity: 3-4 frames at 10-15 fps,
#: so a mover missing two frames is found where it went, a flicker seen again after half a second is not
UNCONFIRMED_PREDICTION_S = 0.3


def patience(followed_s: float, patient_s: float, share: float, coherence: float = 0.0) -> float:
    """Share of its travel a track followed `followed_s` without a restart needs: all of it before patient_s, then
    `share`, falling with the time held to half of `share`. A far person at night moves a pixel or two a second;
    a swaying or flickering thing breaks up, restarts or fails the straightness test long before.

    How fast it falls depends on how `coherent` (0-1, Trend.coherence) the track's movement is. With none (a
    position that jitters) it falls with the square root of the time held, to half of `share` at 4x patient_s: the
    drift stands out of the centroid's jitter only as more frames average it. With a position that grows
    steadily with time it falls with the time itself, to half of `share` at 2x patient_s: every frame then adds
    to the same displacement (several frames of weak but coherent motion are the evidence of one strong one)."""
    if followed_s < patient_s:
        return 1.0
    exponent = 0.5 + 0.5 * min(1.0, max(0.0, coherence))
    return max(0.5 * share, share * (patient_s / followed_s) ** exponent)


class Tracker:
    """Greedy nearest-centroid tracker; cheap enough for every frame on a Pi."""

    def __init__(self, params: TrackerParams) -> None:
        self.params = params
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        self.tracks.clear()

    def update(self, blobs: list[tuple[int, int, int, int, int]], ts: float,
               demand: list[float] | None = None) -> list[Track | None]:
        """Match this frame's blobs (x, y, w, h, area) to tracks; return the track of each blob, in order.

        `demand` (per blob, >= 1) multiplies the travel needed to confirm: blobs in busy (nuisance) regions must
        travel further before they count."""
        followed = {track.id for track in self.tracks if track.seen}  # seen in the previous frame
        for track in self.tracks:
            track.seen = track.held = False
        owners: list[Track | None] = [None] * len(blobs)
        for index, track, held in self._match(blobs, ts, followed):
            self._advance(track, blobs[index], ts, 1.0 if demand is None else demand[index], held)
            owners[index] = track
        for index, blob in enumerate(blobs):
            if owners[index] is None:
                owners[index] = self._start(blob, ts)
        self.tracks = [t for t in self.tracks if t.seen or ts - t.last_ts <= self.params.max_gap_s]
        return owners

    def _match(self, blobs: list[tuple[int, int, int, int, int]], ts: float,
               followed: set[int]) -> list[tuple[int, Track, bool]]:
        """(blob index, track, held) of each match; held: found only where it was last seen (_distance).

        The gate is small compared with the object, so fragments of foliage that reshuffle every frame do not
        chain into one "travelling" track. Pairs of like size are matched first, nearest first: a person walking
        through foliage passes over the leaves' small tracks, and nearest-only would hand the person's blob to a
        leaf track (the person's own track then gets a leaf, or nothing, and their travel starts afresh every few
        frames); a size jump between pairs is a different object (see max_area_ratio), matched only when nothing
        like it is near. Like size is a claim only for a track `followed` (_claims)."""
        pairs = []
        for index, (x, y, w, h, area) in enumerate(blobs):
            cx, cy = x + w / 2, y + h / 2
            for track in self.tracks:
                gate = max(self.params.gate_px, 0.5 * track.size)
                predicted, last = self._distance(track, cx, cy, ts)
                if min(predicted, last) <= gate:
                    claim = self._claims(track, area, followed)
                    pairs.append((not claim, min(predicted, last), index, track, predicted > gate))
        pairs.sort(key=lambda item: item[:2])
        used_blobs: set[int] = set()
        used_tracks: set[int] = set()
        matched = []
        for _no_claim, _dist, index, track, held in pairs:
            if index in used_blobs or track.id in used_tracks:
                continue
            used_blobs.add(index)
            used_tracks.add(track.id)
            matched.append((index, track, held))
        return matched

    def _distance(self, track: Track, cx: float, cy: float, ts: float) -> tuple[float, float]:
        """Distances of a blob centre from the track's position predicted from its velocity and from where it was
        last seen (inf where it is not to be looked for there).

        A blob that changes shape (fragments, a light coming on around it) moves its centroid and so its velocity,
        and a confirmed object must not be lost (its alarm break off) for a frame of a bad prediction; a tiny far
        one's box edges flicker by a pixel, which at 25 fps is a velocity of tens of px/s, and its slow travel must
        not start afresh for it. Unconfirmed tracks are looked for where they were last seen only within gate_px:
        fragments of swaying foliage that hop about by more would chain into "travel". And only for max_gap_s
        after the track was last found where predicted: when a person walks off past swaying leaves, the leaves'
        blobs go on jittering where the person was last seen, and a track held there for longer is the leaves'
        (see _advance for what a held match does and does not count for)."""
        dt = ts - track.last_ts
        # an unconfirmed track's velocity is one or two frames' centroid shifts, of a blob that may be changing
        # shape: extrapolated over a long gap it predicts the next flicker pixels on, and the jump is matched as
        # travel (a sky patch between leaves, wallflower-wavingtrees at startup_s x0.7)
        ahead = dt if track.confirmed else min(dt, UNCONFIRMED_PREDICTION_S)
        px, py = track.pos[0] + track.velocity[0] * ahead, track.pos[1] + track.velocity[1] * ahead
        predicted = math.hypot(cx - px, cy - py)
        last = math.hypot(cx - track.pos[0], cy - track.pos[1])
        if ts - track.expected_ts > self.params.max_gap_s or not (track.confirmed or last <= self.params.gate_px):
            last = math.inf
        return predicted, last

    def _claims(self, track: Track, area: float, followed: set[int]) -> bool:
        """Whether the track has first claim on a blob of `area` px: the blob is of its size (within
        max_area_ratio either way) and the track has been followed without a break (matched before, and seen
        in the previous frame). Like size is evidence of the same object only then: near-lens foliage flashes
        up in big blobs, one here, the next a little further on; a big track seen once (no velocity yet) or lost
        for frames would take them from the leaves' tracks they cover and count the jump between two flashes
        as travel (sbi-foliage at travel or activity_demand 0.7, threshold 0.7)."""
        ratio = area / max(1.0, track.size ** 2)
        alike = 1.0 / self.params.max_area_ratio <= ratio <= self.params.max_area_ratio
        return alike and track.hits >= 2 and track.id in followed

    def _start(self, blob: tuple[int, int, int, int, int], ts: float) -> Track:
        x, y, w, h, area = blob
        centre = (x + w / 2, y + h / 2)
        size = math.sqrt(area)
        track = Track(self._next_id, ts, centre, centre, size, size, ts, anchor=centre, anchor_ts=ts, box=blob,
                      origin_ts=ts, expected_ts=ts)
        self._next_id += 1
        self.tracks.append(track)
        return track

    def _advance(self, track: Track, blob: tuple[int, int, int, int, int], ts: float, demand: float,
                 held: bool = False) -> None:
        """Follow the track to `blob`. A held match (found only where it was last seen) keeps the track and its
        travel, but is no evidence of motion: its velocity is kept (learnt from leaves jittering where a walker
        left, it would slow to theirs and the prediction hold the track on them for good), it does not move the
        anchor or count as motion this frame (Track.moving), and it does not confirm."""
        p = self.params
        x, y, w, h, area = blob
        centre = (x + w / 2, y + h / 2)
        dt = ts - track.last_ts
        track.held = held
        if not held:
            track.expected_ts = ts
        if dt > 0 and not held:
            vx, vy = (centre[0] - track.pos[0]) / dt, (centre[1] - track.pos[1]) / dt
            track.velocity = (0.5 * track.velocity[0] + 0.5 * vx, 0.5 * track.velocity[1] + 0.5 * vy)
        step = math.hypot(centre[0] - track.pos[0], centre[1] - track.pos[1])
        ratio = area / max(1.0, track.size ** 2)
        growth = math.sqrt(area) / max(1.0, track.origin_size)
        if not track.confirmed and (ratio > p.max_area_ratio or ratio < 1.0 / p.max_area_ratio
                                    or growth > p.max_growth or growth < 1.0 / p.max_growth):
            # the blob changed shape abruptly (fragments merging or splitting, as foliage does all the time) or has
            # grown/shrunk a lot since travel was first counted (a patch of leaves sliding out of view): its centroid
            # shift is not evidence of travel, so travel is counted afresh from here
            track.origin, track.path, track.far, track.hits = centre, 0.0, 0.0, 1
            track.origin_size = math.sqrt(area)
            track.origin_ts = ts
            track.smooth = centre
            track.trend = Trend()
        # travel and path on the smoothed centroid: a box moves in whole pixels and its edges flicker by one, which
        # for an object a few pixels tall is most of a second's travel and lengthens the path with jitter
        before = track.smooth or track.origin
        track.smooth = (before[0] + SMOOTHING * (centre[0] - before[0]),
                        before[1] + SMOOTHING * (centre[1] - before[1]))
        step = math.hypot(track.smooth[0] - before[0], track.smooth[1] - before[1])
        track.path += step
        if not track.confirmed:  # (only confirmation asks for it)
            track.trend.add(ts - track.origin_ts, track.smooth[0] - track.origin[0],
                            track.smooth[1] - track.origin[1])
        track.pos = centre
        track.size = math.sqrt(area)
        track.last_ts = ts
        track.hits += 1
        track.box = blob
        track.seen = True
        aspect = max(1, w - p.box_margin) / max(1, h - p.box_margin)
        # smoothed over ~5 frames: a gait or a fragment merging changes one frame's box, not the object's shape
        track.aspect = aspect if track.aspect == 0 else 0.8 * track.aspect + 0.2 * aspect
        net = math.hypot(track.smooth[0] - track.origin[0], track.smooth[1] - track.origin[1])
        track.far = max(track.far, net)
        if held:
            return
        if math.hypot(centre[0] - track.anchor[0], centre[1] - track.anchor[1]) >= p.move_px:
            track.anchor, track.anchor_ts = centre, ts
        # a far person at night crawls a pixel or two a second: a track held long without breaking up is evidence
        # in itself, so it needs less travel (still in a straight enough line)
        # (the less the more steadily it moves one way: Trend.coherence)
        coherent = 0.0 if track.confirmed else track.trend.coherence()
        held = patience(ts - track.origin_ts, p.patient_s, p.patient_share, coherent)
        # someone right in front of the camera fills much of the view and cannot travel far within it: from half
        # of large_px the travel needed falls with the size, to none at large_px (a step at one size would make
        # a person just under it wait for travel they have no room for)
        room = 1.0 if demand > p.large_max_demand else min(1.0, max(0.0, 2.0 - 2.0 * area / p.large_px))
        travelled = net >= p.travel_px * demand * held * room and net >= p.min_straightness * track.path
        close = room == 0.0
        if not track.confirmed and track.hits >= p.min_hits and (travelled or close):
            track.confirmed = True
            track.anchor_ts = ts
