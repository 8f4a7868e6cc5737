"""Dual-technology confirmation: per zone, decide whether video motion and PIR activity make an alarm-worthy frame.

Pure: timestamps in, decisions out; no clocks, no I/O. Timestamps are seconds on the frame timeline.

Per frame the caller reports PIR edges first (observe_pir), then the frame's video motion (step). A zone is
confirmed when its policy holds:
  video   - video motion in the zone this frame
  pir     - a PIR of the zone is active
  either  - either of the above
  both    - one of them is happening now and both were seen within window_s of each other (dual technology)
The result names every technology that saw the zone within the window ("video", "pir:<input id>").

It also watches each PIR against the video of its zone and reports suspected faults: a PIR that keeps firing
with no video motion (false triggering, or a blinded camera), and a PIR that stays silent while video keeps
moving in its zone (a dead or masked PIR).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping

from pydantic import Field, model_validator

from common.settings import Section

Policy = Literal["video", "pir", "both", "either"]
DEFAULT_ZONE = "default"  # the zone whole-frame motion belongs to when no zones are known


class ZonePolicy(Section):
    zone: str = Field(min_length=1, max_length=64, description="Zone name, as given to inputs in [[gpio.inputs]] "
                      "and to video detection zones.")
    policy: Policy = Field(description="video | pir | both (PIR and video within window_s) | either.")


class FusionSettings(Section):
    """Config section [fusion]."""

    zones: tuple[ZonePolicy, ...] = Field((), description="Per-zone confirmation policy ([[fusion.zones]]).")
    default_policy: Policy = Field("both", description="Policy of a zone with a PIR that is not listed. 'both' suits "
                                   "outdoor zones, where each technology false-alarms on its own (sun, foliage, "
                                   "animals). A zone without a PIR is confirmed by video alone.")
    window_s: float = Field(5.0, gt=0, le=120, description="PIR and video activity this close in time corroborate "
                                                           "each other.")
    pir_fault_s: float = Field(3600.0, ge=60, le=7 * 86400, description="A PIR that fires this long without any "
                               "video motion in its zone is reported as a suspected fault.")
    pir_fault_activations: int = Field(5, ge=1, le=10_000, description="...and has fired at least this often.")
    silent_pir_fault_s: float = Field(4 * 3600.0, ge=60, le=7 * 86400, description="Video motion in a zone whose "
                                      "PIR stays silent this long makes the PIR a suspected fault.")
    silent_pir_episodes: int = Field(10, ge=1, le=10_000, description="...given at least this many separate "
                                     "video motion episodes (apart by more than window_s).")

    @model_validator(mode="after")
    def _unique_zones(self) -> "FusionSettings":
        names = [z.zone for z in self.zones]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"fusion.zones lists zone(s) {duplicated} more than once")
        return self


def zone_problems(settings: FusionSettings, pir_zones: Mapping[str, str]) -> list[str]:
    """Listed zones whose policy needs a PIR but have none (they could never alarm). pir_zones: PIR id -> zone."""
    with_pir = set(pir_zones.values())
    return [f"fusion zone {z.zone!r} has policy {z.policy!r} but no PIR input is in that zone"
            for z in settings.zones if z.policy in ("pir", "both") and z.zone not in with_pir]


@dataclass(frozen=True, slots=True)
class FaultReport:
    """A suspected detector fault (active=True) or its clearing (active=False)."""

    ts: float
    detector: str          # "pir:<input id>"
    zone: str
    reason: str            # "pir_without_video" | "pir_silent_while_video_moves"
    since: float           # start of the evidence
    count: int             # activations / video episodes in the evidence
    active: bool


@dataclass(frozen=True, slots=True)
class FusionResult:
    ts: float
    confirmed: bool
    zones: tuple[str, ...]          # confirmed zones
    confirmed_by: tuple[str, ...]   # "video" first, then "pir:<id>" sorted
    faults: tuple[FaultReport, ...] = ()


@dataclass(slots=True)
class _Pir:
    zone: str
    active: bool = False
    last_active: float | None = None   # last moment known active (rising edge, falling edge or now)
    lonely_since: float | None = None  # first activation not seen by video
    lonely_count: int = 0
    silent_since: float | None = None  # first video episode since the PIR last fired
    silent_episodes: int = 0
    faults: dict[str, FaultReport] = field(default_factory=dict)  # reason -> report, while raised


class Fusion:
    def __init__(self, settings: FusionSettings, pir_zones: Mapping[str, str]) -> None:
        problems = zone_problems(settings, pir_zones)
        if problems:
            raise ValueError("; ".join(problems))  # AgentConfig checks the same with zone_problems, naming the key
        self.settings = settings
        self._pirs = {pir_id: _Pir(zone) for pir_id, zone in pir_zones.items()}
        self._zone_pirs: dict[str, list[str]] = {}  # zone -> its PIR ids (looked up per zone and frame)
        for pir_id, zone in pir_zones.items():
            self._zone_pirs.setdefault(zone, []).append(pir_id)
        listed = {z.zone: z.policy for z in settings.zones}
        self._zones = sorted(set(listed) | set(pir_zones.values())) or [DEFAULT_ZONE]
        self._policy = {zone: listed.get(zone, settings.default_policy if self._pirs_in(zone) else "video")
                        for zone in self._zones}
        self._last_video: dict[str, float] = {}
        self._pending_faults: list[FaultReport] = []

    def policy(self, zone: str) -> Policy:
        return self._policy.get(zone, "video")

    def _pirs_in(self, zone: str) -> list[str]:
        return self._zone_pirs.get(zone, [])

    # -- inputs ------------------------------------------------------------------------------------------------
    def observe_pir(self, ts: float, pir_id: str, active: bool) -> None:
        """A debounced PIR edge (active or not) at its own time."""
        try:
            pir = self._pirs[pir_id]
        except KeyError:
            raise ValueError(f"unknown PIR {pir_id!r}; known PIRs: {sorted(self._pirs) or 'none'}") from None
        if active and not pir.active:
            self._on_activation(ts, pir_id, pir)
        pir.active = active
        pir.last_active = ts

    def step(self, ts: float, motion_zones: Iterable[str | None]) -> FusionResult:
        """Decide one frame. motion_zones: zones with video motion now; None = the whole frame (every zone)."""
        moving = self._expand(motion_zones)
        for pir in self._pirs.values():
            if pir.active:
                pir.last_active = ts
        for zone in moving:
            self._on_video(ts, zone)
        confirmed = [zone for zone in sorted(set(self._zones) | moving) if self._confirmed(ts, zone, moving)]
        sources: set[str] = set()
        for zone in confirmed:
            sources |= self._sources(ts, zone)
        self._check_faults(ts)
        faults, self._pending_faults = tuple(self._pending_faults), []
        return FusionResult(ts, bool(confirmed), tuple(confirmed), order_sources(sources), faults)

    def _expand(self, motion_zones: Iterable[str | None]) -> set[str]:
        moving: set[str] = set()
        for zone in motion_zones:
            moving |= set(self._zones) if zone is None else {zone}
        return moving

    # -- decision ----------------------------------------------------------------------------------------------
    def _recent(self, ts: float, seen: float | None) -> bool:
        return seen is not None and ts - seen <= self.settings.window_s

    def _confirmed(self, ts: float, zone: str, moving: set[str]) -> bool:
        video_now = zone in moving
        pirs = [self._pirs[p] for p in self._pirs_in(zone)]
        pir_now = any(p.active for p in pirs)
        policy = self.policy(zone)
        if policy == "video":
            return video_now
        if policy == "pir":
            return pir_now
        if policy == "either":
            return video_now or pir_now
        return ((video_now or pir_now) and self._recent(ts, self._last_video.get(zone))
                and any(self._recent(ts, p.last_active) for p in pirs))

    def _sources(self, ts: float, zone: str) -> set[str]:
        found = {"video"} if self._recent(ts, self._last_video.get(zone)) else set()
        return found | {f"pir:{p}" for p in self._pirs_in(zone) if self._recent(ts, self._pirs[p].last_active)}

    # -- fault watch -------------------------------------------------------------------------------------------
    def _on_activation(self, ts: float, pir_id: str, pir: _Pir) -> None:
        pir.silent_since, pir.silent_episodes = None, 0
        self._clear(ts, pir_id, pir, "pir_silent_while_video_moves")
        if self._recent(ts, self._last_video.get(pir.zone)):
            self._corroborated(ts, pir_id, pir)
            return
        pir.lonely_since = ts if pir.lonely_since is None else pir.lonely_since
        pir.lonely_count += 1

    def _on_video(self, ts: float, zone: str) -> None:
        new_episode = not self._recent(ts, self._last_video.get(zone))
        self._last_video[zone] = ts
        for pir_id in self._pirs_in(zone):
            pir = self._pirs[pir_id]
            if self._recent(ts, pir.last_active):
                self._corroborated(ts, pir_id, pir)
            elif new_episode:
                pir.silent_since = ts if pir.silent_since is None else pir.silent_since
                pir.silent_episodes += 1

    def _corroborated(self, ts: float, pir_id: str, pir: _Pir) -> None:
        pir.lonely_since, pir.lonely_count = None, 0
        pir.silent_since, pir.silent_episodes = None, 0
        self._clear(ts, pir_id, pir, "pir_without_video")
        self._clear(ts, pir_id, pir, "pir_silent_while_video_moves")

    def _check_faults(self, ts: float) -> None:
        s = self.settings
        for pir_id, pir in self._pirs.items():
            if (pir.lonely_since is not None and pir.lonely_count >= s.pir_fault_activations
                    and ts - pir.lonely_since >= s.pir_fault_s):
                self._raise(ts, pir_id, pir, "pir_without_video", pir.lonely_since, pir.lonely_count)
            if (pir.silent_since is not None and pir.silent_episodes >= s.silent_pir_episodes
                    and ts - pir.silent_since >= s.silent_pir_fault_s):
                self._raise(ts, pir_id, pir, "pir_silent_while_video_moves", pir.silent_since, pir.silent_episodes)

    def _raise(self, ts: float, pir_id: str, pir: _Pir, reason: str, since: float, count: int) -> None:
        if reason in pir.faults:
            return  # reported once until cleared
        report = FaultReport(ts, f"pir:{pir_id}", pir.zone, reason, since, count, active=True)
        pir.faults[reason] = report
        self._pending_faults.append(report)

    def _clear(self, ts: float, pir_id: str, pir: _Pir, reason: str) -> None:
        raised = pir.faults.pop(reason, None)
        if raised is not None:
            self._pending_faults.append(FaultReport(ts, raised.detector, pir.zone, reason, raised.since,
                                                    raised.count, active=False))

    def active_faults(self) -> list[FaultReport]:
        return [report for pir in self._pirs.values() for report in pir.faults.values()]


def order_sources(sources: Iterable[str]) -> tuple[str, ...]:
    """'video' first, then PIRs by id: a stable order for payloads."""
    unique = set(sources)
    return tuple(sorted(unique, key=lambda s: (s != "video", s)))
