"""`pid-station verify`: check saved clips and snapshots against their signed manifests, and an audit log's chain.

Works offline on the files a station saved. Each problem is said exactly ("bytes 262144-524287 changed",
"entry 412 removed", "signed by an unknown key"); any problem makes the exit code non-zero.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from agent.evidence.audit import canonical
from agent.evidence.chain import Verdict, id_of, verify_audit
from agent.evidence.keys import verify_signature
from agent.evidence.manifest import SUFFIX

__all__ = ["Verdict", "verify_audit", "verify_media", "verify_paths"]

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # a manifest is a few KiB; anything far larger is not one


def _trusted(public_b64: str, trusted_ids: set[str] | None) -> str | None:
    """A problem when the signing key is not one the station trusts (None: trust the key named in the file)."""
    if trusted_ids is None:
        return None
    signer = id_of(public_b64)
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


def verify_paths(paths: list[Path], public_b64: str | None = None) -> list[Verdict]:
    """Audit logs are told by name (audit*.jsonl); manifests themselves are checked with their media."""
    trusted = {id_of(public_b64)} if public_b64 is not None else None
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
