"""Robustness sweep: the evaluation with each main detection parameter scaled (0.7x and 1.3x by default).

Issue 9's targets must hold with every main parameter off by +-30 %: a detector that only meets them at one tuned
point will not meet them on footage it has not seen. Each variant changes one parameter of the given config and
runs every manifest; a row passes when all intrusions are detected, no false or animal alarm is raised and the
median / worst onset stay within the targets. CPU heavy (one full evaluation per row): `jobs` runs rows in
parallel processes, `clip_ids` limits it to a subset.
"""

from __future__ import annotations

import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from agent.config import AgentConfig
from common.errors import ConfigError
from evaluation.evaluate import evaluate, load_manifest

#: the parameters a sweep scales by default: every detection setting that moves a decision (thresholds, time
#: constants, size and travel demands) and the engine's confirmation frames. Left out: zones, tamper, the
#: animals policy, blur (an odd kernel size, 1 = off) and min_area (unset: derived from person_height).
MAIN_PARAMETERS = (
    "detection.threshold", "detection.activity_gain", "detection.activity_s", "detection.background_s",
    "detection.absorb_s", "detection.startup_s", "detection.settle_s", "detection.light_change",
    "detection.light_share", "detection.scene_change_share", "detection.person_height",
    "detection.person_height_near", "detection.max_area", "detection.large_object", "detection.travel",
    "detection.travel_heights", "detection.patient_s", "detection.patient_travel", "detection.straightness",
    "detection.min_track_frames", "detection.nuisance_s", "detection.nuisance_gain", "detection.activity_demand",
    "detection.still_s", "detection.track_gap_s", "events.min_motion_frames",
)
FACTORS = (0.7, 1.3)


@dataclass(frozen=True, slots=True)
class Targets:
    """Issue 9's detection targets."""

    median_onset_s: float = 1.0
    worst_onset_s: float = 2.0


@dataclass(frozen=True, slots=True)
class SweepRow:
    parameter: str           # "" for the unchanged config
    factor: float
    value: float | int | None
    intrusions: int
    detected: int
    false_alarms: int
    animal_alarms: int
    median_onset_s: float | None
    worst_onset_s: float | None
    passed: bool
    note: str = ""           # e.g. the value was held at its allowed bound
    where: str = ""          # the clips behind a miss, a false alarm or the worst onset


def scaled_config(config: AgentConfig, parameter: str, factor: float) -> tuple[AgentConfig, float | int, str]:
    """(config with `parameter` ("section.name") times `factor`, the value used, a note). Integers are rounded
    (and move by at least 1); a value past the setting's allowed range is held at the bound and said so."""
    section_name, _, name = parameter.partition(".")
    section = getattr(config, section_name, None)
    if section is None or not name or name not in type(section).model_fields:
        raise ConfigError(f"unknown sweep parameter {parameter!r} (use section.name, e.g. detection.threshold)")
    current = getattr(section, name)
    if isinstance(current, bool) or not isinstance(current, (int, float)):
        raise ConfigError(f"sweep parameter {parameter} is not a number (it is {current!r})")
    value: float | int = current * factor
    if isinstance(current, int):
        value = int(round(value))
        if value == current:
            value = current + (1 if factor > 1 else -1)
    value, note = _within_bounds(type(section).model_fields[name].metadata, value)
    try:
        changed = type(section).model_validate({**section.model_dump(), name: value})
    except ValidationError as exc:
        raise ConfigError(f"sweep parameter {parameter} = {value}: {exc.errors()[0]['msg']}") from None
    return config.model_copy(update={section_name: changed}), value, note


def _within_bounds(metadata: list, value: float | int) -> tuple[float | int, str]:
    for bound in metadata:  # pydantic's Field(le=..., ge=...) constraints
        high, low = getattr(bound, "le", None), getattr(bound, "ge", None)
        if high is not None and value > high:
            return high, f"held at its maximum {high}"
        if low is not None and value < low:
            return low, f"held at its minimum {low}"
    return value, ""


def _row(manifests: list[Path], config: AgentConfig, clip_ids: list[str] | None, parameter: str, factor: float,
         targets: Targets) -> SweepRow:
    value, note = None, ""
    if parameter:
        config, value, note = scaled_config(config, parameter, factor)
    reports = [evaluate(manifest, config, _ids_in(manifest, clip_ids)) for manifest in manifests]
    latencies = [lat for report in reports for lat in report.latencies_s]
    intrusions = sum(report.intrusions for report in reports)
    detected = sum(report.detected for report in reports)
    false_alarms = sum(report.false_alarms for report in reports)
    animal_alarms = sum(report.animal_alarms for report in reports)
    median = statistics.median(latencies) if latencies else None
    worst = max(latencies) if latencies else None
    passed = (detected == intrusions and false_alarms == 0 and animal_alarms == 0
              and (median is None or median <= targets.median_onset_s)
              and (worst is None or worst <= targets.worst_onset_s))
    return SweepRow(parameter, factor, value, intrusions, detected, false_alarms, animal_alarms, median, worst,
                    passed, note, _where([clip for report in reports for clip in report.clips]))


def _where(clips: list) -> str:
    """'missed: id; false: id x2; slowest: id 2.16 s' for the clips that decide a row."""
    parts = []
    missed = [clip.id for clip in clips if clip.alarms.missed]
    if missed:
        parts.append("missed: " + ", ".join(missed))
    false = [f"{clip.id} x{clip.alarms.false_alarms}" for clip in clips if clip.alarms.false_alarms]
    if false:
        parts.append("false: " + ", ".join(false))
    timed = [clip for clip in clips if clip.alarms.latencies_s]
    if timed:
        slowest = max(timed, key=lambda clip: clip.alarms.worst_latency_s)
        parts.append(f"slowest: {slowest.id} {slowest.alarms.worst_latency_s:.2f} s")
    return "; ".join(parts)


def _ids_in(manifest: Path, clip_ids: list[str] | None) -> list[str] | None:
    if clip_ids is None:
        return None
    known = {clip.id for clip in load_manifest(manifest).clips}
    return [clip_id for clip_id in clip_ids if clip_id in known]


def sweep(manifests: list[Path], config: AgentConfig, parameters: tuple[str, ...] = MAIN_PARAMETERS,
          factors: tuple[float, ...] = FACTORS, clip_ids: list[str] | None = None, jobs: int = 1,
          targets: Targets = Targets()) -> list[SweepRow]:
    """The unchanged config's row, then one row per parameter and factor (in that order)."""
    manifests = [Path(manifest) for manifest in manifests]
    if clip_ids is not None:
        known = {clip.id for manifest in manifests for clip in load_manifest(manifest).clips}
        unknown = [clip_id for clip_id in clip_ids if clip_id not in known]
        if unknown:
            raise ConfigError(f"unknown clip id(s) {', '.join(unknown)}")
    for parameter in parameters:  # refuse a bad name before hours of work, not after
        for factor in factors:
            scaled_config(config, parameter, factor)
    plan = [("", 1.0)] + [(parameter, factor) for parameter in parameters for factor in factors]
    if jobs <= 1:
        return [_row(manifests, config, clip_ids, parameter, factor, targets) for parameter, factor in plan]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_row, manifests, config, clip_ids, parameter, factor, targets)
                   for parameter, factor in plan]
        return [future.result() for future in futures]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_sweep(rows: list[SweepRow], targets: Targets = Targets()) -> str:
    header = (f"{'parameter':30s} {'factor':>6s} {'value':>8s} {'detected':>8s} {'FA':>3s} {'AA':>3s} "
              f"{'onset med':>9s} {'onset max':>9s} {'pass':>4s}")
    lines = [header, "-" * len(header)]
    for row in rows:
        value = "-" if row.value is None else f"{row.value:.4g}"
        lines.append(
            f"{row.parameter or '(as configured)':30s} {row.factor:6.2f} {value:>8s} "
            f"{row.detected:>4d}/{row.intrusions:<3d} {row.false_alarms:3d} {row.animal_alarms:3d} "
            f"{_fmt(row.median_onset_s):>9s} {_fmt(row.worst_onset_s):>9s} {'yes' if row.passed else 'NO':>4s}"
            + (f"  ({row.note})" if row.note else "") + (f"  {row.where}" if row.where else ""))
    failed = [row for row in rows if not row.passed]
    lines.append("-" * len(header))
    lines.append(f"{len(rows) - len(failed)}/{len(rows)} rows meet the targets (every intrusion detected, no false "
                 f"or animal alarm, onset median <= {targets.median_onset_s:g} s, worst <= "
                 f"{targets.worst_onset_s:g} s)")
    return "\n".join(lines)
