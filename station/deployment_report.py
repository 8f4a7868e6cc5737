"""`pid-station deployment-report`: the report the force evaluates the scheme with, from the monitor's records.

Reads DIR/<device>/{events,heartbeats,results}.jsonl as `pid-station monitor --out DIR` writes them (one or more
units). Per unit and across them: alarms per day and hour, per zone and class; the operators' verdicts and the time
from alarm to verdict; tamper and fault events; availability per day (heartbeats arriving, camera ok); a CSV keyed
by site ref, date and hour (every hour of the deployment, zero rows too, so the join with police crime records is
one step); PNG charts; a short text summary; the loan's client reference and survey link when a config is given.
"""

from __future__ import annotations

import collections
import csv
import json
import logging
import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from agent.security_parse import Refused, load_json
from common.errors import ConfigError

log = logging.getLogger(__name__)

HOUR_S = 3600.0
COLUMNS = ("site_ref", "device_id", "date", "hour", "alarms", "genuine", "false", "unknown", "police_dispatched",
           "tamper", "faults")
FAULT_KINDS = ("fault", "detector_fault")
# the monitor saves messages of at most 1 MiB (station/monitor.py MAX_MESSAGE_BYTES); a results line holds a command
# and the unit's answer to it, so twice that is the most a line it wrote can be
MAX_LINE_BYTES = 2 * 1024 * 1024


def epoch(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def _lines(path: Path, unreadable: list[str]) -> list[dict]:
    """The file's records, one JSON object a line. A line that is not one (torn by a power cut on the station, or
    damaged) is skipped and named in `unreadable`: the operator still gets the report, and is told what it lacks."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = load_json(line, MAX_LINE_BYTES, "line")
            if not isinstance(record, dict):
                raise Refused("line is not a JSON object")
        except Refused as refusal:
            unreadable.append(f"{path.name} line {number} unreadable: {refusal}")
            log.warning("report: %s line %d unreadable, skipped: %s", path, number, refusal)
            continue
        records.append(record)
    return records


@dataclass
class Deployment:
    device_id: str
    site_ref: str = ""
    first: str | None = None
    last: str | None = None
    alarms: int = 0
    alarms_by_day: dict[str, int] = field(default_factory=dict)
    alarms_by_hour: dict[str, int] = field(default_factory=dict)   # "00".."23", over the whole deployment
    alarms_by_zone: dict[str, int] = field(default_factory=dict)
    alarms_by_class: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)
    police_dispatched: int = 0
    verdict_delay_s: list[float] = field(default_factory=list)     # alarm start -> the unit's answer to the verdict
    tamper_faults: dict[str, int] = field(default_factory=dict)    # "tamper:video", "fault:camera", ...
    availability_by_day: dict[str, float] = field(default_factory=dict)  # share of the day heartbeats arrived
    camera_ok_by_day: dict[str, float] = field(default_factory=dict)     # share of heartbeats with camera ok
    hours: dict[tuple[str, int], dict] = field(default_factory=dict, repr=False)
    unreadable: list[str] = field(default_factory=list)  # "events.jsonl line 7 unreadable: ...", skipped


def _hour_row(unit: Deployment, iso: str) -> dict:
    key = (iso[:10], int(iso[11:13]))
    return unit.hours.setdefault(key, {name: 0 for name in COLUMNS[4:]})


def _bump(table: dict, key: str) -> None:
    table[key] = table.get(key, 0) + 1


def read_unit(folder: Path) -> Deployment:
    unit = Deployment(folder.name)
    events = _lines(folder / "events.jsonl", unit.unreadable)
    beats = _lines(folder / "heartbeats.jsonl", unit.unreadable)
    results = _lines(folder / "results.jsonl", unit.unreadable)
    stamps = sorted([e["ts"] for e in events] + [b["ts"] for b in beats] + [r["result"]["ts"] for r in results])
    if stamps:
        unit.first, unit.last = stamps[0], stamps[-1]
    unit.site_ref = next((e["site_ref"] for e in events + beats if e.get("site_ref")), "")
    starts = {}
    for event in events:
        if event["kind"] == "intrusion" and event.get("phase") == "start" and not event.get("walk_test"):
            starts[event["event_id"]] = event
            _count_alarm(unit, event)
        elif event["kind"] == "tamper" or event["kind"] in FAULT_KINDS:
            what = event.get("source") or event.get("input") or event.get("detector")
            _bump(unit.tamper_faults, f"{event['kind']}:{what}")
            _hour_row(unit, event["ts"])["tamper" if event["kind"] == "tamper" else "faults"] += 1
    for record in results:
        _count_verdict(unit, record, starts)
    _availability(unit, beats)
    return unit


def _count_alarm(unit: Deployment, event: dict) -> None:
    unit.alarms += 1
    _bump(unit.alarms_by_day, event["ts"][:10])
    _bump(unit.alarms_by_hour, event["ts"][11:13])
    _bump(unit.alarms_by_zone, event.get("zone") or "(no zone)")
    _bump(unit.alarms_by_class, event.get("class", "unknown"))
    _hour_row(unit, event["ts"])["alarms"] += 1


def _count_verdict(unit: Deployment, record: dict, starts: dict[str, dict]) -> None:
    """A verdict counts once the unit accepted it (its ok answer), filed under the alarm's own hour."""
    command, result = record.get("command") or {}, record["result"]
    if command.get("cmd") != "verdict" or not result.get("ok"):
        return
    _bump(unit.verdicts, command["verdict"])
    unit.police_dispatched += bool(command["police_dispatched"])
    alarm = starts.get(command["event_id"])
    row = _hour_row(unit, alarm["ts"] if alarm else result["ts"])
    row[command["verdict"]] += 1
    row["police_dispatched"] += bool(command["police_dispatched"])
    if alarm:
        unit.verdict_delay_s.append(round(epoch(result["ts"]) - epoch(alarm["ts"]), 3))


def _availability(unit: Deployment, beats: list[dict]) -> None:
    """Per day: the share of the observed span covered by heartbeat gaps no longer than twice the usual gap."""
    times = sorted(epoch(b["ts"]) for b in beats)
    if len(times) < 2:
        return
    gaps = [b - a for a, b in zip(times[:-1], times[1:], strict=True)]
    usual = statistics.median(gaps)
    covered: dict[str, float] = collections.defaultdict(float)
    observed: dict[str, float] = collections.defaultdict(float)
    for start, gap in zip(times[:-1], gaps, strict=True):
        for day, seconds in _split_by_day(start, gap):
            observed[day] += seconds
            if gap <= 2 * usual:
                covered[day] += seconds
    unit.availability_by_day = {day: round(covered[day] / observed[day], 4) for day in sorted(observed)}
    per_day: dict[str, list[bool]] = collections.defaultdict(list)
    for beat in beats:
        per_day[beat["ts"][:10]].append(beat["camera"]["state"] == "ok")
    unit.camera_ok_by_day = {day: round(sum(oks) / len(oks), 4) for day, oks in sorted(per_day.items())}


def _split_by_day(start: float, length: float):
    """(day, seconds) pieces of [start, start + length) cut at UTC midnights."""
    end = start + length
    while start < end:
        moment = datetime.fromtimestamp(start, timezone.utc)
        midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        piece = min(end, midnight) - start
        yield moment.strftime("%Y-%m-%d"), piece
        start += piece


def csv_rows(unit: Deployment) -> list[dict]:
    """Every hour from the unit's first record to its last, zero rows included (an hour with no alarm is a fact)."""
    if unit.first is None:
        return []
    hour = datetime.fromtimestamp(epoch(unit.first), timezone.utc).replace(minute=0, second=0, microsecond=0)
    last = epoch(unit.last)
    rows = []
    while hour.timestamp() <= last:
        date = hour.strftime("%Y-%m-%d")
        counts = unit.hours.get((date, hour.hour), {name: 0 for name in COLUMNS[4:]})
        rows.append({"site_ref": unit.site_ref, "device_id": unit.device_id, "date": date, "hour": hour.hour,
                     **counts})
        hour += timedelta(hours=1)
    return rows


def write_csv(units: list[Deployment], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as target:
        writer = csv.DictWriter(target, fieldnames=COLUMNS)
        writer.writeheader()
        for unit in units:
            writer.writerows(csv_rows(unit))


def write_charts(units: list[Deployment], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    paths = []
    for name, title, label in (("alarms.png", "Alarms per day over the loan", "alarms"),
                               ("availability.png", "Availability per day (heartbeats arriving)", "share of the day")):
        figure, axes = plt.subplots(figsize=(9, 4))
        width = 0.8 / max(len(units), 1)  # the units' bars side by side within each day
        for index, unit in enumerate(units):
            series = unit.alarms_by_day if name == "alarms.png" else unit.availability_by_day
            days = sorted(series)
            when = [mdates.date2num(datetime.strptime(day, "%Y-%m-%d")) for day in days]
            legend = f"{unit.site_ref} ({unit.device_id})"
            if name == "alarms.png":
                axes.bar([w + (index - (len(units) - 1) / 2) * width for w in when], [series[d] for d in days],
                         width=width, label=legend)
            elif days:
                axes.plot(when, [series[d] for d in days], marker="o", label=legend)
        axes.xaxis.set_major_locator(mdates.DayLocator())
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        if name == "alarms.png":
            axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            axes.set_ylim(0, 1.05)
        axes.set_title(title)
        axes.set_ylabel(label)
        axes.legend(loc="best", fontsize="small")
        figure.autofmt_xdate()
        figure.tight_layout()
        figure.savefig(out / name, dpi=100)
        plt.close(figure)
        paths.append(out / name)
    return paths


def summary(units: list[Deployment], loan: dict) -> str:
    lines = []
    for unit in units:
        delays = unit.verdict_delay_s
        median = f"{statistics.median(delays) / 60:.1f} min" if delays else "n/a"
        availability = (f"{100 * statistics.mean(unit.availability_by_day.values()):.1f} %"
                        if unit.availability_by_day else "n/a (no heartbeats saved)")
        verdicts = ", ".join(f"{count} {name}" for name, count in sorted(unit.verdicts.items())) or "none"
        lines += [f"Site {unit.site_ref} (unit {unit.device_id}): {unit.first} to {unit.last}",
                  f"  {unit.alarms} alarms on {len(unit.alarms_by_day)} day(s); zones {unit.alarms_by_zone}; "
                  f"classes {unit.alarms_by_class}",
                  f"  verdicts: {verdicts}; police dispatched {unit.police_dispatched}; median time from alarm to "
                  f"verdict {median}",
                  f"  tamper and faults: {unit.tamper_faults or 'none'}; mean availability {availability}"]
        lines += [f"  {line} (skipped)" for line in unit.unreadable]
    if loan:
        lines.append(f"Client reference {loan['client_ref'] or '(none)'}; "
                     f"feedback survey {loan['survey_url'] or '(none)'}")
    return "\n".join(lines) + "\n"


def build(records: Path) -> list[Deployment]:
    folders = sorted(p for p in records.iterdir() if p.is_dir() and (p / "events.jsonl").is_file()) \
        if records.is_dir() else []
    if not folders:
        raise ConfigError(f"{records}: no unit records (<device>/events.jsonl, as `pid-station monitor --out` saves)")
    return [read_unit(folder) for folder in folders]


def loan_facts(config_path: Path | None) -> dict:
    if config_path is None:
        return {}
    from agent.config import load_config

    config = load_config(config_path)
    return {"site_ref": config.site_ref, "client_ref": config.loan.client_ref, "survey_url": config.loan.survey_url}


def add_parser(commands) -> None:
    parser = commands.add_parser("deployment-report", help="the deployment report from the monitor's saved records")
    parser.add_argument("records", type=Path, help="the folder `pid-station monitor --out` saved into")
    parser.add_argument("--out", type=Path, help="folder for report.json, report.csv, summary.txt and the PNG "
                                                 "charts (default: <records>/report)")
    parser.add_argument("--config", type=Path, help="the unit's config: the loan's client reference and survey link")


def cmd_report(args) -> int:
    units = build(args.records)
    loan = loan_facts(args.config)
    out = args.out or args.records / "report"
    out.mkdir(parents=True, exist_ok=True)
    write_csv(units, out / "report.csv")
    write_charts(units, out)
    report = {"loan": loan, "units": [{k: v for k, v in asdict(u).items() if k != "hours"} for u in units]}
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True), encoding="utf-8")
    text = summary(units, loan)
    (out / "summary.txt").write_text(text, encoding="utf-8")
    print(text, end="")
    print(f"report -> {out}")
    return 0
