"""The loan report: the service period of one deployment, from the unit's own signed audit log.

For the client and the firm: site, unit, start, end, each extension with its reference, days in service, days
armed, alarms by day and zone, downtime (camera, link, power). The audit log is verified first (a report is never
made from a log whose chain or signatures fail). Built here, on the unit's side, because `pid-agent decommission`
signs it with the unit's key before the key is wiped; `pid-station loan-report` (station/loan_report.py) makes the
same report from a saved log, and adds the PDF.
"""

from __future__ import annotations

import collections
import html
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from agent.evidence.audit import canonical, line_hash
from agent.evidence.chain import verify_audit
from common.errors import AgentError

DAY_S = 86400.0


def epoch(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def day_of(iso: str) -> str:
    return iso[:10]


@dataclass
class LoanReport:
    device_id: str = ""
    site_ref: str = ""
    started: str | None = None
    ends: str | None = None
    term_days: int | None = None
    extensions: list[dict] = field(default_factory=list)
    days_in_service: float = 0.0
    days_armed: float = 0.0
    alarms: int = 0
    alarms_by_day: dict[str, int] = field(default_factory=dict)
    alarms_by_zone: dict[str, int] = field(default_factory=dict)
    downtime_s: dict[str, float] = field(default_factory=dict)   # camera, link (arc path), power
    audit_entries: int = 0
    audit_head: str = ""
    signature: str | None = None
    signed_by: str | None = None


class _Downtime:
    """Open/close intervals per cause: a fault opens, its restore closes; an interval still open at the report's
    end counts up to it."""

    def __init__(self) -> None:
        self.open: dict[str, float] = {}
        self.total: collections.Counter[str] = collections.Counter()

    def begin(self, cause: str, at: float) -> None:
        self.open.setdefault(cause, at)

    def end(self, cause: str, at: float) -> None:
        if cause in self.open:
            self.total[cause] += at - self.open.pop(cause)

    def close_all(self, at: float) -> dict[str, float]:
        for cause in list(self.open):
            self.end(cause, at)
        return {cause: round(seconds, 1) for cause, seconds in sorted(self.total.items())}


def _entries(audit_path: Path) -> list[dict]:
    verdict = verify_audit(audit_path)
    if not verdict.ok:
        raise AgentError(f"{audit_path} does not verify, no report made from it: " + "; ".join(verdict.problems))
    return [json.loads(line) for line in audit_path.read_bytes().split(b"\n") if line]


def build_report(audit_path: Path, until: float | None = None) -> LoanReport:
    entries = _entries(audit_path)
    lines = [line for line in audit_path.read_bytes().split(b"\n") if line]
    report = LoanReport(audit_entries=len(entries), audit_head=line_hash(lines[-1]) if lines else "")
    downtime, armed_since, armed_s = _Downtime(), None, 0.0
    last = 0.0
    for entry in entries:
        data, at = entry.get("data") or {}, epoch(entry["ts"])
        last = max(last, at)
        if entry["kind"] == "start":
            report.device_id, report.site_ref = data.get("device_id", ""), data.get("site_ref", "")
        elif entry["kind"] == "loan":
            report.started, report.ends = data.get("started"), data.get("ends")
            report.term_days, report.extensions = data.get("term_days"), data.get("extensions", [])
        elif entry["kind"] == "event":
            armed_since, armed_s = _event(report, downtime, data, at, armed_since, armed_s)
    end = until if until is not None else last
    if report.ends:
        end = min(end, epoch(report.ends))
    if armed_since is not None:
        armed_s += max(0.0, end - armed_since)
    report.downtime_s = downtime.close_all(end)
    report.days_armed = round(armed_s / DAY_S, 2)
    if report.started:
        report.days_in_service = round(max(0.0, end - epoch(report.started)) / DAY_S, 2)
    return report


def _event(report: LoanReport, downtime: _Downtime, event: dict, at: float, armed_since, armed_s):
    kind = event.get("kind")
    if kind == "intrusion" and event.get("phase") == "start" and not event.get("walk_test"):
        report.alarms += 1
        day = day_of(event["ts"])
        report.alarms_by_day[day] = report.alarms_by_day.get(day, 0) + 1
        zone = event.get("zone") or "(whole view)"
        report.alarms_by_zone[zone] = report.alarms_by_zone.get(zone, 0) + 1
    elif kind == "armed":
        if event.get("armed") and armed_since is None:
            armed_since = at
        elif not event.get("armed") and armed_since is not None:
            armed_s, armed_since = armed_s + at - armed_since, None
    elif kind == "loan" and event.get("state") == "started" and armed_since is None:
        armed_since = at  # the loan starts on the first arming
    elif kind == "fault" and event.get("source") in ("camera", "arc"):
        downtime.begin("camera" if event["source"] == "camera" else "link", at)
    elif kind == "restore" and event.get("source") in ("camera", "arc"):
        downtime.end("camera" if event["source"] == "camera" else "link", at)
    elif kind == "power":
        (downtime.end if event.get("mains_ok") else downtime.begin)("power", at)
    return armed_since, armed_s


def sign_report(report: LoanReport, data_dir: Path) -> None:
    """Sign the report with the unit's own key (run on the unit, or with a copy of its data dir)."""
    from agent.evidence.keys import UnitKey

    key = UnitKey.load_or_create(data_dir)
    report.signature, report.signed_by = None, None
    body = asdict(report)
    report.signature, report.signed_by = key.sign(canonical(body)), key.public_b64()


def _count_rows(counts: dict[str, int]) -> str:
    return "".join(f"<tr><td>{html.escape(key)}</td><td>{n}</td></tr>" for key, n in sorted(counts.items()))


def write_html(report: LoanReport, path: Path) -> None:
    rows = [("Site", report.site_ref), ("Unit", report.device_id), ("Start", report.started), ("End", report.ends),
            ("Term (days)", report.term_days), ("Days in service", report.days_in_service),
            ("Days armed", report.days_armed), ("Alarms", report.alarms)]
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    extensions = "".join(f"<li>{html.escape(str(e.get('days')))} days, paid until "
                         f"{html.escape(str(e.get('paid_until')))}, ref {html.escape(str(e.get('reference')))}"
                         f" ({html.escape(str(e.get('at')))})</li>" for e in report.extensions) or "<li>none</li>"
    by_day = _count_rows(report.alarms_by_day)
    by_zone = _count_rows(report.alarms_by_zone)
    down = "".join(f"<tr><td>{html.escape(c)}</td><td>{s / 3600:.1f} h</td></tr>" for c, s in report.downtime_s.items())
    path.write_text(f"""<!doctype html><html lang="en"><meta charset="utf-8"><title>Loan report {html.escape(
        report.site_ref)}</title><style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}
td,th{{border:1px solid #444;padding:4px 8px;text-align:left}}</style><h1>Loan report</h1><table>{cells}</table>
<h2>Extensions</h2><ul>{extensions}</ul><h2>Alarms by day</h2><table>{by_day}</table><h2>Alarms by zone</h2>
<table>{by_zone}</table><h2>Downtime</h2><table>{down}</table><p>From the unit's audit log: {report.audit_entries}
entries, head {html.escape(report.audit_head)}. Signed by {html.escape(str(report.signed_by))}.</p></html>
""", encoding="utf-8")
