"""`pid-agent decommission`: the clean return of a unit that comes back from a site.

In this order, each step only once the one before succeeded (a refusal changes nothing):
1. refuse without --yes, or while the agent's service runs (it owns the outbox);
2. the outbox is drained: what waits is delivered to the broker (bounded by --drain-timeout), else exported with
   --export DIR (messages.jsonl in row order and the media files with their signed manifests, each copy checked
   against the SHA-256 the outbox holds); neither: refused, the unit keeps its data;
3. a last, signed `decommission` entry in the audit log (what was delivered, exported and is about to be wiped),
   then the final report in --report DIR: the loan report (agent/loan_report.py, signed with the unit's key), a
   signed decommission.json, a copy of the audit log and the unit's public key, so the unit's history can still be
   verified once its key is gone;
4. the wipe: site data (outbox, audit log, loan book, command store, everything else in data_dir), media and keys
   (the unit's signing key, the commissioning page's secrets, the broker TLS client key), listed file by file.

Files are unlinked; keys are first overwritten. On an SD card neither reaches every physical copy (wear
levelling), which is why the card is reflashed before the unit's next loan (scripts/flash).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent import loan_report
from agent.config import AgentConfig
from agent.evidence.audit import FILE as AUDIT_FILE
from agent.evidence.audit import AuditLog, canonical
from agent.evidence.keys import KEY_FILE, UnitKey
from agent.selftest import SERVICE, deliver_outbox, service_running
from agent.storage.media import file_sha256
from agent.storage.outbox import Outbox
from common.clock import Clock, iso_utc
from common.errors import AgentError

MEDIA, KEYS, SITE = "media", "keys", "site data"
SECRET_FOLDERS = ("keys", "commissioning")  # under data_dir: the unit's signing key, the page's password and cert


class DecommissionRefused(AgentError):
    """Decommissioning stopped before anything was wiped; the message says why and what to do."""


@dataclass(frozen=True)
class Wiped:
    category: str
    path: Path
    bytes: int


@dataclass
class Outcome:
    rows_waiting: int = 0       # outbox rows when decommissioning began
    delivered: bool = False     # they reached the broker
    exported_rows: int = 0
    exported_media: int = 0
    wiped: list[Wiped] = field(default_factory=list)

    def totals(self) -> dict[str, dict[str, int]]:
        totals = {category: {"files": 0, "bytes": 0} for category in (SITE, MEDIA, KEYS)}
        for item in self.wiped:
            totals[item.category]["files"] += 1
            totals[item.category]["bytes"] += item.bytes
        return totals


def decommission(config: AgentConfig, clock: Clock, report_dir: Path, *, yes: bool, export_dir: Path | None = None,
                 drain_timeout_s: float = 60.0, offline: bool = False) -> Outcome:
    if not yes:
        raise DecommissionRefused("decommissioning wipes this unit's site data, media and keys: run it again "
                                  "with --yes once the unit is back")
    if service_running():
        raise DecommissionRefused(f"{SERVICE} is running: stop it first (systemctl stop {SERVICE})")
    data_dir = Path(config.data_dir)
    for needed, what in ((AUDIT_FILE, "audit log"), (Path("keys") / KEY_FILE, "signing key")):
        if not (data_dir / needed).is_file():
            raise DecommissionRefused(f"{data_dir}: no {what} ({needed}): not this unit's data dir (config data_dir)")
    for label, folder in (("--report", report_dir), ("--export", export_dir)):
        if folder is not None and folder.resolve().is_relative_to(data_dir.resolve()):
            raise DecommissionRefused(f"{label} {folder} is inside the data dir, which is about to be wiped")
    wipe_plan(config)  # refused here, before any change, if a file cannot be removed
    outcome = Outcome()
    outbox = Outbox(data_dir, config.outbox.max_bytes, clock)
    try:
        outcome.rows_waiting = outbox.depth()
        outcome.delivered = _drain(config, outbox, clock, drain_timeout_s, offline)
        left = outbox.depth()
    finally:
        outbox.close()
    if not outcome.delivered:
        if export_dir is None:
            broker = "(not contacted: --offline)" if offline else f"{config.broker.url} (not delivered)"
            held = (f"{left} message(s) for the broker {broker}" if left else
                    "messages only the alarm receiving centre's links still wait for")
            raise DecommissionRefused(f"the outbox still holds {held}: deliver them, or give --export DIR to keep "
                                      "them; nothing was wiped")
        outcome.exported_rows, outcome.exported_media = export_outbox(data_dir, export_dir)
    key = UnitKey.load_or_create(data_dir)
    planned = Outcome(wiped=wipe_plan(config)).totals()
    _last_entry(config, key, clock, outcome, planned, export_dir)
    plan = wipe_plan(config)  # again: the audit log has grown by the last entry
    write_final_report(config, key, clock, report_dir, outcome, plan)
    outcome.wiped = wipe(plan, data_dir)
    return outcome


# drain or export --------------------------------------------------------------------------------------------
def _empty(outbox: Outbox) -> bool:
    return outbox.depth() == 0 and outbox.size_bytes() == 0  # nothing for the uplink, nor for an ARC link


def _drain(config: AgentConfig, outbox: Outbox, clock: Clock, timeout_s: float, offline: bool) -> bool:
    if not _empty(outbox) and not offline and timeout_s > 0:
        deliver_outbox(config, outbox, clock, timeout_s)
    return _empty(outbox)


def export_outbox(data_dir: Path, export_dir: Path) -> tuple[int, int]:
    """Every outbox row as a JSON line (chunk rows name their bytes in the media file), and every queued media
    file copied under media/<event_id>/ and checked against its recorded SHA-256. Read-only on the outbox."""
    export_dir.mkdir(parents=True, exist_ok=True)
    database = sqlite3.connect(f"file:{data_dir / 'outbox.sqlite'}?mode=ro", uri=True)
    try:
        rows = database.execute("SELECT id, topic, kind, payload, chunk_offset, chunk_length FROM messages "
                                "ORDER BY id").fetchall()
        media = database.execute("SELECT event_id, name, path, total_bytes, sha256 FROM media ORDER BY id").fetchall()
    except sqlite3.Error as exc:
        raise DecommissionRefused(f"outbox {data_dir / 'outbox.sqlite'} cannot be read for export: {exc}") from None
    finally:
        database.close()
    with (export_dir / "messages.jsonl").open("w", encoding="utf-8") as stream:
        for row_id, topic, kind, payload, offset, length in rows:
            line = {"id": row_id, "topic": topic, "kind": kind}
            line.update({"payload": json.loads(payload)} if payload is not None else
                        {"chunk_offset": offset, "chunk_length": length})
            stream.write(json.dumps(line, sort_keys=True) + "\n")
    for event_id, name, path, total, sha256 in media:
        _export_media(Path(path), export_dir / "media" / event_id / name, total, sha256)
    return len(rows), len(media)


def _export_media(source: Path, target: Path, total: int, sha256: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(source, target)
    except OSError as exc:
        raise DecommissionRefused(f"cannot export {source}: {exc.strerror or exc}; nothing was wiped") from None
    if target.stat().st_size != total or file_sha256(target) != sha256:
        raise DecommissionRefused(f"exported {target} does not match the outbox's record of {source} "
                                  f"({total} bytes, SHA-256 {sha256[:16]}...): nothing was wiped")


# record and report ------------------------------------------------------------------------------------------
def _last_entry(config: AgentConfig, key: UnitKey, clock: Clock, outcome: Outcome,
                planned: dict[str, dict[str, int]], export_dir: Path | None) -> None:
    AuditLog(config.data_dir, key, clock).append("decommission", {
        "device_id": config.device_id, "site_ref": config.site_ref, "rows_waiting": outcome.rows_waiting,
        "delivered": outcome.delivered, "exported_rows": outcome.exported_rows,
        "exported_media": outcome.exported_media, "exported_to": str(export_dir.resolve()) if export_dir else None,
        "wipe": planned})


def write_final_report(config: AgentConfig, key: UnitKey, clock: Clock, report_dir: Path, outcome: Outcome,
                       plan: list[Wiped]) -> None:
    """The loan report and decommission.json, signed by the unit's key while it still exists, with the audit log
    and the public key to check them by."""
    report_dir.mkdir(parents=True, exist_ok=True)
    audit = Path(config.data_dir) / AUDIT_FILE
    report = loan_report.build_report(audit)  # refuses a log whose chain or signatures fail
    loan_report.sign_report(report, config.data_dir)
    (report_dir / "loan-report.json").write_text(json.dumps(asdict(report), indent=1, sort_keys=True))
    loan_report.write_html(report, report_dir / "loan-report.html")
    body = {"device_id": config.device_id, "site_ref": config.site_ref, "ts": iso_utc(clock.wall()),
            "rows_waiting": outcome.rows_waiting, "delivered": outcome.delivered,
            "exported_rows": outcome.exported_rows, "exported_media": outcome.exported_media,
            "audit_entries": report.audit_entries, "audit_head": report.audit_head,
            "wiped": [{"category": item.category, "path": str(item.path), "bytes": item.bytes} for item in plan],
            "totals": Outcome(wiped=plan).totals(), "public_key": key.public_b64(), "key": key.id}
    signed = {**body, "sig": key.sign(canonical(body))}
    (report_dir / "decommission.json").write_text(json.dumps(signed, indent=1, sort_keys=True))
    shutil.copyfile(audit, report_dir / AUDIT_FILE)
    (report_dir / "unit.pub").write_text(key.public_b64() + "\n")


# wipe -------------------------------------------------------------------------------------------------------
def wipe_plan(config: AgentConfig) -> list[Wiped]:
    """Every file to wipe, with its category and size; refused before any change if one cannot be removed."""
    data_dir = Path(config.data_dir)
    plan = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file() or p.is_symlink()):
        relative = path.relative_to(data_dir)
        category = (MEDIA if relative.parts[0] == "media" else
                    KEYS if relative.parts[0] in SECRET_FOLDERS else SITE)
        try:
            size = path.lstat().st_size
        except FileNotFoundError:  # an SQLite -wal/-shm gone since the listing (its last connection closed)
            continue
        plan.append(Wiped(category, path, size))
    tls = config.broker.tls
    if tls is not None and tls.key_file is not None and Path(tls.key_file).is_file():
        plan.append(Wiped(KEYS, Path(tls.key_file), Path(tls.key_file).stat().st_size))
    for item in plan:
        if not _removable(item.path):
            raise DecommissionRefused(f"{item.path} cannot be removed by this user (run as root): nothing wiped")
    return plan


def _removable(path: Path) -> bool:
    return os.access(path.parent, os.W_OK | os.X_OK)


def wipe(plan: list[Wiped], data_dir: Path) -> list[Wiped]:
    wiped = []
    for item in plan:
        if item.category == KEYS and item.path.is_file() and not item.path.is_symlink():
            _overwrite(item.path, item.bytes)
        try:
            item.path.unlink()
        except FileNotFoundError:  # SQLite's -wal/-shm go by themselves when the last connection closes
            continue
        except OSError as exc:
            raise AgentError(f"wipe stopped at {item.path}: {exc.strerror or exc} (already wiped: "
                             f"{len(wiped)} files)") from None
        wiped.append(item)
    for folder in sorted((p for p in data_dir.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        folder.rmdir()  # empty now: every file in it was wiped
    return wiped


def _overwrite(path: Path, size: int) -> None:
    with path.open("r+b") as stream:
        stream.write(b"\0" * size)
        stream.flush()
        os.fsync(stream.fileno())


def format_outcome(outcome: Outcome, data_dir: Path) -> str:
    lines = []
    for item in outcome.wiped:
        shown = item.path.relative_to(data_dir) if item.path.is_relative_to(data_dir) else item.path
        lines.append(f"wiped {item.category:<9}  {item.bytes:>10} bytes  {shown}")
    for category, total in outcome.totals().items():
        lines.append(f"{category}: {total['files']} files, {total['bytes']} bytes")
    how = ("delivered to the broker" if outcome.delivered and outcome.rows_waiting else
           "already empty" if outcome.delivered else
           f"exported ({outcome.exported_rows} rows, {outcome.exported_media} media files)")
    lines.insert(0, f"outbox: {outcome.rows_waiting} messages waiting, {how}")
    return "\n".join(lines)

