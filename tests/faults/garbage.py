"""Seeded garbage for every input the unit reads: command payloads, recordings, config files.

Seeded generators rather than hypothesis here: each case costs a real broker round trip or a replay, and the fault
table needs a fixed count; tests/test_security_fuzz.py and tests/test_config_fuzz.py shrink with hypothesis.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from nacl.signing import SigningKey

from agent.security import sign

JSONISH = '{}[]":,0123456789eE.-+ \\/ntrufalsu\x00\xff'


def command_payloads(chooser: random.Random, count: int, device_id: str, key: SigningKey,
                     key_id: str) -> list[tuple[bytes, bool]]:
    """(payload, retained) pairs: raw bytes, JSON-looking text, deep or huge JSON, unsigned and wrongly signed
    envelopes, and validly signed envelopes carrying garbage commands (so every layer of the gate is reached)."""
    makers = [
        lambda: chooser.randbytes(chooser.randint(0, 4096)),
        lambda: "".join(chooser.choice(JSONISH) for _ in range(chooser.randint(1, 300))).encode("utf-8", "replace"),
        lambda: ("[" * chooser.randint(50, 5000)).encode(),
        lambda: b'{"a": "' + b"x" * chooser.randint(100_000, 1_300_000) + b'"}',
        lambda: json.dumps({"cmd": chooser.choice(["arm", "disarm", "set_mode", "rm -rf"]), "id": "x"}).encode(),
        lambda: json.dumps({**_signed(chooser, device_id, key, key_id), "sig": "AAAA"}).encode(),
        lambda: json.dumps(_signed(chooser, device_id, SigningKey(chooser.randbytes(32)), key_id)).encode(),
        lambda: json.dumps(_signed(chooser, device_id, key, key_id)).encode(),
        lambda: json.dumps(_signed(chooser, device_id, key, key_id, issued=time.time() - 86400)).encode(),
    ]
    return [(chooser.choice(makers)(), chooser.random() < 0.02) for _ in range(count)]


def _garbage_command(chooser: random.Random) -> object:
    return chooser.choice([
        {"cmd": chooser.choice(["arm", "disarm", "set_mode", "silence", "extend_loan", "verdict", "\u202e"]),
         "id": "".join(chooser.choice("ab/+#\x00é") for _ in range(chooser.randint(0, 80))),
         chooser.choice(["mode", "days", "x"]): chooser.choice([None, -1, 2**70, "loud", [], {"a": 1}, 1e308])},
        [1, 2, 3], "disarm", None, 12,
    ])


def _signed(chooser: random.Random, device_id: str, key: SigningKey, key_id: str, issued: float | None = None) -> dict:
    return sign(_garbage_command(chooser), device_id, key, key_id, issued if issued is not None else time.time())


def corrupt_copies(source: Path, folder: Path, chooser: random.Random, count: int) -> list[tuple[Path, str]]:
    """Damaged copies of a recording, each with what was done to it: cut short, spans overwritten with noise or
    zeros, the header smashed, nothing but noise, empty."""
    data = source.read_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for number in range(count):
        damaged, how = bytearray(data), chooser.choice(["cut", "noise", "zeros", "header", "all-noise", "empty"])
        if how == "cut":
            damaged = damaged[: chooser.randint(0, len(data) - 1)]
        elif how in ("noise", "zeros"):
            for _ in range(chooser.randint(1, 8)):
                start, length = chooser.randrange(len(data)), chooser.randint(16, 8192)
                span = chooser.randbytes(length) if how == "noise" else bytes(length)
                damaged[start:start + length] = span[: len(damaged) - start]
        elif how == "header":
            damaged[: 64] = chooser.randbytes(64)
        elif how == "all-noise":
            damaged = bytearray(chooser.randbytes(chooser.randint(1, 200_000)))
        else:
            damaged = bytearray()
        path = folder / f"damaged-{number:03d}-{how}.mp4"
        path.write_bytes(bytes(damaged))
        copies.append((path, how))
    return copies


VALID_CONFIG = """device_id = "pid-garbage-01"
site_ref = "yard 4"
data_dir = "{data_dir}"

[broker]
url = "mqtt://127.0.0.1:1883"
keepalive_s = 30
chunk_bytes = 262144

[camera]
backend = "replay"
source = "/nonexistent/walk.mp4"
fps = 10

[events]
event_gap_s = 0.5

[recorder]
pre_roll_s = 3.0
post_roll_s = 1.0

[heartbeat]
interval_s = 60
"""


def corrupt_configs(chooser: random.Random, count: int, data_dir: Path) -> list[str]:
    """Config texts damaged the ways a hand edit, a bad copy or a flipped bit damage them."""
    valid = VALID_CONFIG.format(data_dir=data_dir)
    mutations = [
        lambda text: _flip_bytes(chooser, text),
        lambda text: text[: chooser.randrange(len(text))],
        lambda text: text.replace(chooser.choice(["30", "10", "0.5", "60", "3.0"]),
                                  chooser.choice(["-1", "1e999", "nan", '"ten"', "[]", "99999999999999999999999"])),
        lambda text: text.replace(chooser.choice(["[broker]", "[camera]", "[events]"]),
                                  chooser.choice(["[brokr]", "[camera", "[[events]]", "[broker.x]"])),
        lambda text: text + chooser.choice(["\nunknown_key = 1\n", "\n[camera]\nfps = 5\n", "\x00", "\ndevice_id = 5"]),
        lambda text: chooser.randbytes(chooser.randint(0, 2000)).decode("latin-1"),
        lambda text: text.replace("=", chooser.choice(["==", ":", ""]), 1),
    ]
    return [chooser.choice(mutations)(valid) for _ in range(count)]


def _flip_bytes(chooser: random.Random, text: str) -> str:
    raw = bytearray(text.encode())
    for _ in range(chooser.randint(1, 6)):
        raw[chooser.randrange(len(raw))] ^= 1 << chooser.randrange(8)
    return raw.decode("utf-8", "replace")
