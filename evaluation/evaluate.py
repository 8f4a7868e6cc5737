"""Evaluation of the detector and event engine on recorded clips with ground truth (a clips.json manifest).

Runs the same detection + event engine as `replay --fast` on every clip, turns the engine's events into alarm
spans and scores them (agent/scoring.py); where a clip has per-frame masks, scores the foreground mask too.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.analyzer import Analyzer
from agent.config import AgentConfig
from agent.events import AlarmEnded, AlarmStarted, MotionStopped, Phase
from common.clock import ManualClock
from common.errors import ConfigError, SourceError
from drivers.camera.replay import ReplayCamera, list_images
from evaluation.scoring import AlarmScore, AlarmSpan, PixelCounts, pixel_counts, score_alarms
from models.motion import MotionSettings, object_sizes


class ClipSpec(BaseModel):
    """One clip of the manifest (descriptive keys such as 'scene' are allowed and ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(..., min_length=1)
    source: str = Field(..., min_length=1)
    fps: float = Field(..., gt=0)
    frames: int | None = Field(None, ge=1)
    intrusions: list[tuple[int, int]] = []
    dont_care: list[tuple[int, int]] = []
    animals: list[tuple[int, int]] = []  # an animal in view and no person or vehicle (SCORING.md, "Animals")
    masks: str | None = None
    mask_encoding: str = ""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    format: int = Field(1, ge=1, le=1)
    clips: list[ClipSpec]


@dataclass(slots=True)
class ClipReport:
    id: str
    frames: int
    fps: float
    alarms: AlarmScore
    spans: list[AlarmSpan]
    pixels: PixelCounts | None
    intrusions: list[tuple[int, int]]
    dont_care: list[tuple[int, int]]
    scene_changes: int = 0
    tamper_frames: int = 0
    animals: list[tuple[int, int]] = field(default_factory=list)
    shape: tuple[int, int] | None = None  # detection image (rows, columns), for the plots' smallest-object line
    score: list[float] = field(default_factory=list, repr=False)     # per frame, for plots
    activity: list[float] = field(default_factory=list, repr=False)  # per frame, for plots
    motion: list[bool] = field(default_factory=list, repr=False)


@dataclass(slots=True)
class EvalReport:
    manifest: str
    clips: list[ClipReport]

    @property
    def intrusions(self) -> int:
        return sum(clip.alarms.intrusions for clip in self.clips)

    @property
    def detected(self) -> int:
        return sum(clip.alarms.detected for clip in self.clips)

    @property
    def false_alarms(self) -> int:
        return sum(clip.alarms.false_alarms for clip in self.clips)

    @property
    def animal_alarms(self) -> int:
        return sum(clip.alarms.animal_alarms for clip in self.clips)

    @property
    def latencies_s(self) -> list[float]:
        return [lat for clip in self.clips for lat in clip.alarms.latencies_s]

    @property
    def median_latency_s(self) -> float | None:
        return statistics.median(self.latencies_s) if self.latencies_s else None

    @property
    def scored_hours(self) -> float:
        return sum(clip.alarms.scored_hours for clip in self.clips)

    def clip(self, clip_id: str) -> ClipReport:
        for clip in self.clips:
            if clip.id == clip_id:
                return clip
        raise KeyError(clip_id)


# manifest ----------------------------------------------------------------------------------------------------
def load_manifest(path: Path) -> Manifest:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourceError(f"manifest not found: {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceError(f"cannot read manifest {path}: {exc}") from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid manifest {path}: {problems}") from None


def _number(name: str) -> int | None:
    numbers = re.findall(r"\d+", Path(name).name)
    return int(numbers[-1]) if numbers else None


def _mask_paths(clip: ClipSpec, root: Path) -> dict[int, str]:
    """Frame index -> ground-truth mask file, matched by the number in the file names (in000471 <-> gt000471)."""
    if not clip.masks:
        return {}
    masks = {_number(name): name for name in list_images(str(root / clip.masks))}
    frames = list_images(str(root / clip.source))
    if not masks or not frames:
        raise SourceError(f"clip {clip.id}: masks {clip.masks!r} need an image-sequence source with masks present")
    return {index: masks[_number(name)] for index, name in enumerate(frames) if _number(name) in masks}


def _read_mask(path: str, shape: tuple[int, int]) -> np.ndarray:
    truth = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if truth is None:
        raise SourceError(f"cannot decode mask {path}")
    if truth.shape != shape:
        truth = cv2.resize(truth, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return truth


# running -----------------------------------------------------------------------------------------------------
class _SpanRecorder:
    """Turns engine events (and post-roll resumptions) into the alarm's active frame spans."""

    def __init__(self) -> None:
        self.spans: list[AlarmSpan] = []
        self._open: tuple[int, bool] | None = None

    def feed(self, frame: int, events: list, phase: Phase) -> None:
        for event in events:
            if isinstance(event, AlarmStarted):
                self._open = (frame, True)
            elif isinstance(event, (MotionStopped, AlarmEnded)) and self._open is not None:
                self._close(frame - 1)
        if self._open is None and phase is Phase.ALARM:
            self._open = (frame, False)  # resumed from post-roll: same alarm, active again

    def _close(self, last: int) -> None:
        start, raised = self._open
        self.spans.append(AlarmSpan(start, max(start, last), raised))
        self._open = None

    def finish(self, last: int) -> list[AlarmSpan]:
        if self._open is not None:
            self._close(last)
        return self.spans


def evaluate_clip(clip: ClipSpec, root: Path, config: AgentConfig) -> ClipReport:
    camera = ReplayCamera(root / clip.source, clock=ManualClock(), fps=clip.fps, realtime=False,
                          detect_width=config.camera.detect_width)
    analyzer = Analyzer(config)
    masks = _mask_paths(clip, root)
    cdnet = clip.mask_encoding.lower().startswith("cdnet")
    spans = _SpanRecorder()
    pixels = PixelCounts() if masks else None
    report_lists: dict[str, list] = {"score": [], "activity": [], "motion": []}
    scene_changes = tamper_frames = frames = 0
    shape = None
    with camera:
        fps = camera.fps
        for frame in camera.frames():
            analysis = analyzer.process(frame)  # the same detection + event engine as `replay --fast`
            result = analysis.result
            spans.feed(frame.index, analysis.events, analyzer.engine.phase)
            report_lists["score"].append(round(result.score, 5))
            report_lists["activity"].append(round(result.activity, 5))
            report_lists["motion"].append(result.motion)
            scene_changes += result.scene_change
            shape = frame.luma.shape
            tamper_frames += analyzer.engine.tampered is not None  # debounced, as the unit reports it
            # (a panorama-unwrapped mask is not in the clip's geometry and cannot be compared)
            if frame.index in masks and result.mask is not None and result.mask.shape == frame.luma.shape:
                pixels.add(pixel_counts(result.mask, _read_mask(masks[frame.index], result.mask.shape), cdnet))
            frames += 1
    if frames == 0:
        raise SourceError(f"clip {clip.id}: source {clip.source} yielded no frames")
    if clip.frames is not None and clip.frames != frames:
        raise SourceError(f"clip {clip.id}: manifest says {clip.frames} frames, source has {frames}")
    alarm_spans = spans.finish(frames - 1)
    score = score_alarms(alarm_spans, [tuple(r) for r in clip.intrusions], [tuple(r) for r in clip.dont_care],
                         fps, frames, [tuple(r) for r in clip.animals])
    return ClipReport(clip.id, frames, fps, score, alarm_spans, pixels, list(clip.intrusions),
                      list(clip.dont_care), scene_changes, tamper_frames, list(clip.animals), shape, **report_lists)


def evaluate(manifest: Path, config: AgentConfig, clip_ids: list[str] | None = None) -> EvalReport:
    """Run and score every clip of the manifest (or only `clip_ids`, in manifest order)."""
    manifest = Path(manifest)
    spec = load_manifest(manifest)
    known = [clip.id for clip in spec.clips]
    unknown = [clip_id for clip_id in clip_ids or [] if clip_id not in known]
    if unknown:
        raise ConfigError(f"unknown clip id(s) {', '.join(unknown)}; the manifest has: {', '.join(known)}")
    chosen = [clip for clip in spec.clips if clip_ids is None or clip.id in clip_ids]
    root = manifest.resolve().parent
    return EvalReport(str(manifest), [evaluate_clip(clip, root, config) for clip in chosen])


# output ------------------------------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(report: EvalReport) -> str:
    """Per-clip table and totals, fixed-width text."""
    header = (f"{'clip':32s} {'frames':>6s} {'intr':>6s} {'FA':>3s} {'AA':>3s} {'FA/h':>7s} {'lat med':>7s} "
              f"{'lat max':>7s} {'P':>5s} {'R':>5s} {'F1':>5s} {'scene':>5s}")
    lines = [header, "-" * len(header)]
    for clip in report.clips:
        a, p = clip.alarms, clip.pixels
        lines.append(
            f"{clip.id:32s} {clip.frames:6d} {a.detected:>2d}/{a.intrusions:<3d} {a.false_alarms:3d} "
            f"{a.animal_alarms:3d} {_fmt(a.false_alarms_per_hour, '.1f'):>7s} {_fmt(a.median_latency_s):>7s} "
            f"{_fmt(a.worst_latency_s):>7s} {_fmt(p and p.precision):>5s} {_fmt(p and p.recall):>5s} "
            f"{_fmt(p and p.f1):>5s} {clip.scene_changes:5d}")
    lines.append("-" * len(header))
    hours = report.scored_hours
    worst = max(report.latencies_s) if report.latencies_s else None
    lines.append(
        f"{'TOTAL':32s} {sum(c.frames for c in report.clips):6d} {report.detected:>2d}/{report.intrusions:<3d} "
        f"{report.false_alarms:3d} {report.animal_alarms:3d} "
        f"{_fmt(report.false_alarms / hours if hours else None, '.1f'):>7s} "
        f"{_fmt(report.median_latency_s):>7s} {_fmt(worst):>7s}")
    return "\n".join(lines)


def report_dict(report: EvalReport) -> dict:
    """JSON-ready summary (per-frame series left out)."""
    clips = []
    for clip in report.clips:
        a, p = clip.alarms, clip.pixels
        clips.append({
            "id": clip.id, "frames": clip.frames, "fps": clip.fps,
            "intrusions": a.intrusions, "detected": a.detected, "missed": a.missed,
            "latencies_s": a.latencies_s, "median_latency_s": a.median_latency_s,
            "worst_latency_s": a.worst_latency_s, "false_alarms": a.false_alarms,
            "false_alarm_frames": a.false_alarm_frames, "false_alarms_per_hour": a.false_alarms_per_hour,
            "animal_alarms": a.animal_alarms,
            "scored_hours": a.scored_hours, "alarm_spans": [asdict(span) for span in clip.spans],
            "scene_changes": clip.scene_changes, "tamper_frames": clip.tamper_frames,
            "pixels": None if p is None else {"tp": p.tp, "fp": p.fp, "fn": p.fn, "frames": p.frames,
                                              "precision": p.precision, "recall": p.recall, "f1": p.f1},
        })
    hours = report.scored_hours
    return {"manifest": report.manifest, "clips": clips,
            "totals": {"intrusions": report.intrusions, "detected": report.detected,
                       "false_alarms": report.false_alarms, "animal_alarms": report.animal_alarms,
                       "scored_hours": hours,
                       "false_alarms_per_hour": report.false_alarms / hours if hours else None,
                       "median_latency_s": report.median_latency_s,
                       "worst_latency_s": max(report.latencies_s) if report.latencies_s else None}}


def write_json(report: EvalReport, path: Path) -> None:
    try:
        Path(path).write_text(json.dumps(report_dict(report), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"cannot write evaluation JSON {path}: {exc.strerror}") from None


#: colours of the plots: alarm, intrusion (truth), dont_care, animal in view
_ALARM, _TRUTH, _DONT_CARE, _ANIMAL = "tab:red", "tab:green", "0.8", "tab:brown"


def write_plots(report: EvalReport, directory: Path, settings: MotionSettings | None = None) -> list[Path]:
    """One PNG per clip (`<id>.png`) and a summary of the manifest (`summary.png`); returns their paths.

    A clip's figure: on top the changed share and the motion score (log scale) against the thresholds they are
    judged by (light and scene-change shares; the smallest object), below it the truth (intrusion, dont_care,
    animal ranges) and the alarms, each intrusion's onset marked and false alarms crossed. Legends sit outside
    the axes, never on the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = settings or MotionSettings()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for clip in report.clips:
        fig = _clip_figure(plt, clip, settings)
        path = directory / f"{clip.id}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    fig = _summary_figure(plt, report)
    path = directory / "summary.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
    return written


def _clip_figure(plt, clip: ClipReport, settings: MotionSettings):
    fps = clip.fps
    times = np.arange(clip.frames) / fps
    fig, (top, lanes) = plt.subplots(2, 1, figsize=(12, 4.6), sharex=True, height_ratios=(3, 1.3),
                                     layout="constrained")
    floor = 1e-5  # log scale: zero is drawn at the floor
    top.plot(times, np.maximum(clip.activity, floor), lw=0.8, color="tab:gray", label="changed share")
    top.plot(times, np.maximum(clip.score, floor), lw=1.0, color="tab:blue", label="motion score (counted objects)")
    top.axhline(settings.light_share, color="tab:gray", ls=":", lw=1, label=f"light share ({settings.light_share:g})")
    top.axhline(settings.scene_change_share, color="black", ls=":", lw=1,
                label=f"scene change share ({settings.scene_change_share:g})")
    if clip.shape is not None:
        smallest = object_sizes(settings, clip.shape)[0] / (clip.shape[0] * clip.shape[1])
        top.axhline(smallest, color="tab:blue", ls="--", lw=1, label=f"smallest object ({smallest:.1e})")
    motion_t = times[np.asarray(clip.motion, bool)]
    top.plot(motion_t, np.full(motion_t.shape, 1.6 * floor), "|", color="tab:orange", ms=5, label="motion frame")
    top.set_yscale("log")
    top.set_ylim(floor, 1.5)
    top.set_ylabel("share of the image")
    a = clip.alarms
    onset = f", onset median {a.median_latency_s:.2f} s, worst {a.worst_latency_s:.2f} s" if a.latencies_s else ""
    top.set_title(f"{clip.id}: {a.detected}/{a.intrusions} intrusions detected, {a.false_alarms} false alarms "
                  f"({a.animal_alarms} animal){onset}", fontsize=9)
    top.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
    _lanes(lanes, clip)
    lanes.set_xlabel("time in the clip (s)")
    lanes.set_xlim(0, clip.frames / fps)
    return fig


def _lanes(ax, clip: ClipReport) -> None:
    """Truth (row 1) and alarms (row 0) as bars; onsets marked, false alarms crossed."""
    fps = clip.fps

    def bars(ranges, row, colour, label):
        spans = [(first / fps, (last + 1 - first) / fps) for first, last in ranges]
        if spans:
            ax.broken_barh(spans, (row - 0.35, 0.7), color=colour, label=label)

    bars(clip.dont_care, 1, _DONT_CARE, "dont care")
    bars(clip.animals, 1, _ANIMAL, "animal in view")
    bars(clip.intrusions, 1, _TRUTH, "intrusion")
    bars([(span.start, span.end) for span in clip.spans], 0, _ALARM, "alarm")
    detected = [tuple(r) for r in clip.intrusions if tuple(r) not in clip.alarms.missed]
    for (first, _last), latency in zip(detected, clip.alarms.latencies_s, strict=True):
        frame = first + round(latency * fps)
        ax.annotate("", xy=(frame / fps, 0.5), xytext=(first / fps, 0.5),
                    arrowprops={"arrowstyle": "->", "color": "black", "lw": 1})
        ax.text(frame / fps, 0.55, f" onset {(frame - first) / fps:.2f} s", fontsize=7, va="bottom")
    if clip.alarms.false_alarm_frames:
        ax.plot([frame / fps for frame in clip.alarms.false_alarm_frames], [0] * len(clip.alarms.false_alarm_frames),
                "x", color="black", ms=8, mew=2, label="false alarm")
    for first, _last in clip.alarms.missed:
        ax.text(first / fps, 1.45, "missed", fontsize=7, color=_ALARM, va="bottom")
    ax.set_yticks([0, 1], ["alarms", "truth"])
    ax.set_ylim(-0.6, 1.9)
    if ax.get_legend_handles_labels()[0]:  # a clip with nothing at all has no lane to name
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)


def _summary_figure(plt, report: EvalReport):
    """Every clip's onsets against the targets (median 1 s, worst 2 s) and its false / animal alarms."""
    clips = report.clips
    rows = np.arange(len(clips))
    fig, (onsets, alarms) = plt.subplots(1, 2, figsize=(12, 2.2 + 0.3 * len(clips)), sharey=True,
                                         width_ratios=(3, 1), layout="constrained")
    for row, clip in zip(rows, clips, strict=True):
        lat = clip.alarms.latencies_s
        if not clip.alarms.intrusions:
            onsets.text(0.0, row, "no intrusion (nuisance clip)", fontsize=7, color="0.4", va="center")
        onsets.plot(lat, [row] * len(lat), "o", color="tab:blue", ms=5, label="onset of an intrusion")
        if clip.alarms.missed:
            onsets.plot([0] * len(clip.alarms.missed), [row] * len(clip.alarms.missed), "x", color=_ALARM, ms=9,
                        mew=2, label="missed intrusion")
    onsets.axvline(1.0, color="tab:orange", ls="--", lw=1, label="median target (1 s)")
    onsets.axvline(2.0, color=_ALARM, ls="--", lw=1, label="worst target (2 s)")
    worst = max(report.latencies_s, default=0.0)
    onsets.set_xlim(-0.1, max(2.5, worst * 1.1))
    onsets.set_yticks(rows, [clip.id for clip in clips], fontsize=8)
    onsets.invert_yaxis()
    onsets.set_xlabel("onset latency (s)")
    onsets.grid(axis="x", alpha=0.3)
    false = [clip.alarms.false_alarms for clip in clips]
    animal = [clip.alarms.animal_alarms for clip in clips]
    alarms.barh(rows, false, color=_ALARM, label="false alarms")
    alarms.barh(rows, animal, color=_ANIMAL, label="of which animal")
    alarms.set_xlabel("alarms")
    alarms.set_xlim(0, max(3, max(false, default=0) + 1))
    alarms.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = [], []
    for ax in (onsets, alarms):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    median = report.median_latency_s
    fig.suptitle(f"{Path(report.manifest).name}: {report.detected}/{report.intrusions} intrusions detected, "
                 f"{report.false_alarms} false alarms ({report.animal_alarms} animal), onset median "
                 f"{_fmt(median)} s, worst {_fmt(worst if report.latencies_s else None)} s", fontsize=10)
    return fig
