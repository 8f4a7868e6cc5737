"""`pid-station loan-report`: the loan report (agent/loan_report.py) from a unit's saved audit log.

Written as JSON (signed with the unit's key when run with the unit's data dir), HTML for printing and a PDF
(matplotlib's PDF backend).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from agent.loan_report import LoanReport, build_report, sign_report, write_html

__all__ = ["LoanReport", "add_parser", "build_report", "cmd_loan_report", "sign_report", "write_html", "write_pdf"]


def write_pdf(report: LoanReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (text_axes, chart) = plt.subplots(2, 1, figsize=(8.27, 11.69))
    text_axes.axis("off")
    lines = [f"Loan report — site {report.site_ref}, unit {report.device_id}",
             f"Start {report.started}   End {report.ends}   Term {report.term_days} days",
             f"Days in service {report.days_in_service}   Days armed {report.days_armed}   Alarms {report.alarms}",
             *[f"Extension: {e.get('days')} days, paid until {e.get('paid_until')}, ref {e.get('reference')}"
               for e in report.extensions],
             *[f"Downtime {cause}: {seconds / 3600:.1f} h" for cause, seconds in report.downtime_s.items()],
             f"Audit log: {report.audit_entries} entries, head {report.audit_head[:16]}..."]
    for index, line in enumerate(lines):
        text_axes.text(0.0, 1.0 - index * 0.08, line, fontsize=10, va="top", transform=text_axes.transAxes)
    days = sorted(report.alarms_by_day)
    chart.bar(days, [report.alarms_by_day[d] for d in days], color="#1f4e9c")
    chart.set_xlabel("day")
    chart.set_ylabel("alarms")
    chart.set_title("Alarms per day over the loan")
    chart.tick_params(axis="x", rotation=60)
    figure.tight_layout()
    figure.savefig(path, format="pdf")
    plt.close(figure)


def add_parser(commands) -> None:
    parser = commands.add_parser("loan-report", help="the service period of a deployment from the unit's audit log")
    parser.add_argument("audit", type=Path, help="the unit's audit.jsonl (data_dir/audit.jsonl, or a saved copy)")
    parser.add_argument("--out", type=Path, required=True, help="folder for loan-report.json, .html and .pdf")
    parser.add_argument("--data-dir", type=Path, help="the unit's data dir: sign the report with the unit's key")


def cmd_loan_report(args) -> int:
    report = build_report(args.audit)
    if args.data_dir is not None:
        sign_report(report, args.data_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loan-report.json").write_text(json.dumps(asdict(report), indent=1, sort_keys=True))
    write_html(report, args.out / "loan-report.html")
    write_pdf(report, args.out / "loan-report.pdf")
    print(f"loan report for {report.site_ref} ({report.device_id}): {report.days_in_service} days in service, "
          f"{report.alarms} alarms -> {args.out}")
    return 0
