"""The check of an audit log (agent/evidence/audit.py): its hash chain and each entry's signature.

The unit's own side needs it (its loan report is never made from a log that fails: agent/loan_report.py), and so
does the station's `pid-station verify` (station/verify.py), which checks saved media with the same Verdict.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

from nacl.signing import VerifyKey

from agent.evidence.audit import GENESIS, canonical, line_hash, read_entry
from agent.evidence.keys import key_id, verify_signature


@dataclass
class Verdict:
    path: Path
    problems: list[str] = field(default_factory=list)
    checked: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_audit(path: Path, trusted_ids: set[str] | None = None, public_b64: str | None = None) -> Verdict:
    """The chain (each entry names the hash of the one before, numbers run 1, 2, ...) and each signature, checked
    with public_b64 (the unit's public key) when given."""
    verdict = Verdict(path, checked="audit log")
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        verdict.problems.append(f"cannot read: {exc.strerror or exc}")
        return verdict
    if lines and lines[-1] == b"":
        lines.pop()
    else:
        verdict.problems.append("the last entry is torn (no end of line)")
    keys = {}  # key id -> public key: the one given, else those the log announces at each start
    if public_b64 is not None:
        keys[id_of(public_b64)] = public_b64
    previous, expected_n = GENESIS, 1
    damaged: dict[int, int] = {}  # line number -> its place in problems, until an entry of the unit names it
    for number, line in enumerate(lines, start=1):
        try:
            entry, n = read_entry(line)
        except ValueError as refusal:  # the line holds the place of one entry: the next is not called removed
            damaged[number] = len(verdict.problems)
            verdict.problems.append(f"line {number} is not an audit entry ({refusal})")
            previous, expected_n = line_hash(line), expected_n + 1
            continue
        _acknowledged(entry, damaged, verdict.problems)
        if n > expected_n:
            gone = f"entry {expected_n}" if n == expected_n + 1 else f"entries {expected_n}-{n - 1}"
            verdict.problems.append(f"{gone} removed")
        elif n < expected_n:
            verdict.problems.append(f"entry {n} out of order or repeated")
        elif entry.get("prev") != previous:
            verdict.problems.append(f"entry {n} does not follow entry {n - 1} (changed, or one inserted)")
        if public_b64 is None and entry.get("kind") in ("start", "unit_key") and isinstance(entry.get("data"), dict):
            announced = str(entry["data"].get("public_key", ""))
            keys.setdefault(id_of(announced), announced)
        verdict.problems += _entry_signature(entry, n, keys, trusted_ids)
        previous, expected_n = line_hash(line), n + 1
    return verdict


def _acknowledged(entry: dict, damaged: dict[int, int], problems: list[str]) -> None:
    """A damaged_entry the unit wrote at its next start names the line; the problem says so (it still counts)."""
    data = entry.get("data")
    line = data.get("line") if isinstance(data, dict) else None
    if entry.get("kind") == "damaged_entry" and isinstance(line, int) and line in damaged:
        problems[damaged.pop(line)] += f"; recorded by the unit in entry {entry['n']}"


def id_of(public_b64: str) -> str:
    """The key id of a base64 public key; 'invalid' when it is not one."""
    try:
        return key_id(VerifyKey(base64.b64decode(public_b64)))
    except (ValueError, TypeError):
        return "invalid"


def _entry_signature(entry: dict, n: int, keys: dict[str, str], trusted_ids: set[str] | None) -> list[str]:
    signature = entry.pop("sig", None)
    signer = entry.get("key")
    if signer not in keys or (trusted_ids is not None and signer not in trusted_ids):
        return [f"entry {n} signed by an unknown key ({signer})"]
    if not verify_signature(keys[signer], canonical(entry), str(signature)):
        return [f"entry {n}: the signature does not match its contents"]
    return []
