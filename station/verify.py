"""`pid-agent verify`: check saved clips and snapshots against their signed manifests, and an audit log's chain.

Works offline on the files a station saved. Each problem is said exactly ("bytes 262144-524287 changed",
"entry 412 removed", "signed by an unknown key"); any problem makes the exit code non-zero.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from agent.evidence.audit import GENESIS, canonical, line_hash, read_entry
from agent.evidence.keys import key_id, verify_signature
from agent.evidence.manifest import SUFFIX

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # a manifest is a few KiB; anything far larger is not one


@dataclass
class Verdict:
    path: Path
    problems: list[str] = field(default_factory=list)
    checked: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def _trusted(public_b64: str, trusted_ids: set[str] | None) -> str | None:
    """A problem when the signing key is not one the station trusts (None: trust the key named in the file)."""
    if trusted_ids is None:
        return None
    signer = _id_of(public_b64)
    return None if signer in trusted_ids else f"signed by an unknown key ({signer})"


def verify_media(path: Path, trusted_ids: set[str] | None = None) -> Verdict:
    verdict = Verdict(path, checked="media")
    manifest_path = path.with_name(path.name + SUFFIX)
    try:
        if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
            verdict.problems.append(f"{manifest_path.name} is too large to be a manifest")
            return verdict
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        data = path.read_bytes()
    except FileNotFoundError as exc:
        verdict.problems.append(f"missing: {Path(exc.filename).name}")
        return verdict
    except (OSError, ValueError) as exc:
        verdict.problems.append(f"cannot read: {exc}")
        return verdict
    if not isinstance(manifest, dict) or "sig" not in manifest:
        verdict.problems.append(f"{manifest_path.name} is not a signed manifest")
        return verdict
    signature = manifest.pop("sig")
    if not verify_signature(str(manifest.get("public_key", "")), canonical(manifest), str(signature)):
        verdict.problems.append("the manifest's signature does not match its contents")
    if problem := _trusted(str(manifest.get("public_key", "")), trusted_ids):
        verdict.problems.append(problem)
    verdict.problems += _content_problems(data, manifest)
    return verdict


def _content_problems(data: bytes, manifest: dict) -> list[str]:
    problems = []
    if len(data) != manifest.get("bytes"):
        problems.append(f"size {len(data)} bytes, the manifest says {manifest.get('bytes')}")
    if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
        block = int(manifest.get("block_bytes") or 0)
        blocks = manifest.get("blocks") or []
        for index, expected in enumerate(blocks if block > 0 else []):
            chunk = data[index * block:(index + 1) * block]
            if hashlib.sha256(chunk).hexdigest() != expected:
                end = min(len(data), (index + 1) * block) - 1
                problems.append(f"bytes {index * block}-{end} changed")
        if not problems:
            problems.append("SHA-256 differs from the manifest")
    return problems


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
        keys[_id_of(public_b64)] = public_b64
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
            keys.setdefault(_id_of(announced), announced)
        verdict.problems += _entry_signature(entry, n, keys, trusted_ids)
        previous, expected_n = line_hash(line), n + 1
    return verdict


def _acknowledged(entry: dict, damaged: dict[int, int], problems: list[str]) -> None:
    """A damaged_entry the unit wrote at its next start names the line; the problem says so (it still counts)."""
    data = entry.get("data")
    line = data.get("line") if isinstance(data, dict) else None
    if entry.get("kind") == "damaged_entry" and isinstance(line, int) and line in damaged:
        problems[damaged.pop(line)] += f"; recorded by the unit in entry {entry['n']}"


def _id_of(public_b64: str) -> str:
    import base64

    from nacl.signing import VerifyKey

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


def verify_paths(paths: list[Path], public_b64: str | None = None) -> list[Verdict]:
    """Audit logs are told by name (audit*.jsonl); manifests themselves are checked with their media."""
    trusted = {_id_of(public_b64)} if public_b64 is not None else None
    verdicts = []
    for path in paths:
        if path.name.endswith(SUFFIX):
            continue
        if path.suffix == ".jsonl" and path.name.startswith("audit"):
            verdicts.append(verify_audit(path, trusted, public_b64))
        else:
            verdicts.append(verify_media(path, trusted))
    return verdicts


def add_parser(commands) -> None:
    verify = commands.add_parser("verify", help="check saved clips/snapshots against their signed manifests and an "
                                               "audit log's chain (offline)")
    verify.add_argument("paths", nargs="+", type=Path, help="media files (their .manifest.json beside them) and/or "
                                                            "audit.jsonl")
    verify.add_argument("--public-key", help="the unit's public key (base64): anything signed by another key fails")


def cmd_verify(args) -> int:
    """Exit 0 when every file checks out, 1 when any does not (each problem printed)."""
    verdicts = verify_paths(list(args.paths), args.public_key)
    for verdict in verdicts:
        print(f"{verdict.path}: {verdict.checked} OK" if verdict.ok else
              f"{verdict.path}: {verdict.checked} FAILED\n  " + "\n  ".join(verdict.problems))
    return 0 if verdicts and all(verdict.ok for verdict in verdicts) else 1
