"""ANSI/SIA DC-09 frames: build (CRC, length, sequence, AES-CBC with random pad, timestamp), parse answers, send.

A frame is `LF crc(4 hex) length(4 hex) "id" seq Rrcvr Lline #acct [data][x-data]_timestamp CR`; the CRC and
length cover everything from the first quote to the timestamp. Encrypted frames (`"*SIA-DCS"`, `"*NULL"`)
encrypt everything after the `[` as `pad|data][x-data]_timestamp`, padded with random characters to a
multiple of 16 bytes, AES-CBC with a zero IV (DC-09: the random pad in the first block makes every frame
different), through `cryptography`.
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
import string
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from common.errors import AgentError

log = logging.getLogger(__name__)

_PAD_CHARS = string.ascii_letters + string.digits  # never | [ ] (they delimit the data)
_ZERO_IV = bytes(16)
_TIME_FORMAT = "%H:%M:%S,%m-%d-%Y"
_ANSWER = re.compile(r'^"(?P<enc>\*?)(?P<kind>ACK|NAK|DUH|RSP)"(?P<seq>\d{4})?')
_ANSWER_TIME = re.compile(r"_(\d{2}:\d{2}:\d{2},\d{2}-\d{2}-\d{4})")
MAX_ANSWER_BYTES = 1024  # an answer is one short line (an encrypted NAK is ~100 bytes); more is not an answer


class NoAnswer(AgentError):
    """The receiver gave no valid DC-09 answer; the message says why (connection refused, timed out...)."""


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC (poly 0x8005 reflected, init 0), the DC-09 CRC. The standard library has only CRC-CCITT
    (binascii.crc_hqx), so the 8 lines are here; fixed vectors in the tests pin it."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def frame(body: str) -> bytes:
    """Wrap a message body ("id"...timestamp) in LF, CRC, length and CR."""
    raw = body.encode("ascii")
    return b"\n" + f"{crc16_arc(raw):04X}{len(raw):04X}".encode("ascii") + raw + b"\r"


def timestamp(epoch: float) -> str:
    """DC-09 timestamp (UTC): _HH:MM:SS,MM-DD-YYYY."""
    return "_" + datetime.fromtimestamp(epoch, tz=timezone.utc).strftime(_TIME_FORMAT)


def _aes_cbc(key: bytes):
    """AES-CBC with the zero IV. `cryptography` is imported here, not at start-up: it costs 7 MiB of RSS and
    only a unit with an encrypted DC-09 path uses it (issue 12's memory budget)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV))


def encrypt(key: bytes, plain: str, pad: str | None = None) -> str:
    """`pad|plain` padded to whole AES blocks (1-16 random pad characters), AES-CBC, upper-case hex."""
    if pad is None:
        count = 16 - (len(plain) + 1) % 16 or 16
        pad = "".join(secrets.choice(_PAD_CHARS) for _ in range(count))
    data = (pad + "|" + plain).encode("ascii")
    if len(data) % 16:
        raise ValueError(f"pad of {len(pad)} characters does not fill the last AES block")
    encryptor = _aes_cbc(key).encryptor()
    return (encryptor.update(data) + encryptor.finalize()).hex().upper()


def decrypt(key: bytes, hex_text: str) -> str:
    decryptor = _aes_cbc(key).decryptor()
    return (decryptor.update(bytes.fromhex(hex_text)) + decryptor.finalize()).decode("ascii", "replace")


@dataclass(frozen=True)
class Account:
    """Who the unit is to the receiver."""

    receiver: str
    line: str
    account: str
    key: bytes | None = None


def message(who: Account, seq: int, kind: str, data: str, extended: tuple[str, ...], epoch: float,
            pad: str | None = None) -> bytes:
    """One DC-09 frame. kind: SIA-DCS | ADM-CID | NULL; data: e.g. "Nri1/BA003" (empty for NULL);
    extended: x-data fields such as "Vhttps://..." ; seq: 1-9999."""
    if not 1 <= seq <= 9999:
        raise ValueError(f"DC-09 sequence must be 1-9999, got {seq}")
    inner = (f"#{who.account}|{data}" if data else "") + "]" + "".join(f"[{x}]" for x in extended)
    inner += timestamp(epoch)
    flag = "*" if who.key else ""
    head = f'"{flag}{kind}"{seq:04d}R{who.receiver}L{who.line}#{who.account}['
    return frame(head + (encrypt(who.key, inner, pad) if who.key else inner))


def next_sequence(counter: int) -> int:
    """A counter 1, 2, 3... as the DC-09 sequence 0001-9999, wrapping to 0001 after 9999."""
    return (counter - 1) % 9999 + 1


@dataclass(frozen=True)
class Answer:
    kind: str                      # ACK | NAK | DUH | RSP
    seq: int | None
    receiver_time: float | None    # epoch seconds, when the answer carried a timestamp (a NAK does)
    text: str


def parse_answer(raw: bytes, key: bytes | None) -> Answer | None:
    """Read a receiver's answer; None when it is not a DC-09 answer or its CRC/length are wrong."""
    text = raw.strip(b"\r\n\x00 ").decode("ascii", "replace")
    if text.startswith('"'):
        body = text  # bare answer without CRC/length (some receivers, and pysiaalarm for unknown accounts)
    else:
        if len(text) < 8:
            return None
        body = text[8:]
        try:
            crc, length = int(text[:4], 16), int(text[4:8], 16)
        except ValueError:
            return None
        if crc != crc16_arc(body.encode("ascii", "replace")) or length != len(body):
            return None
    match = _ANSWER.match(body)
    if match is None:
        return None
    clear = body
    if match["enc"] and key and "[" in body:
        encrypted = body.split("[", 1)[1].rstrip("]")
        try:
            clear = body + decrypt(key, encrypted)
        except ValueError:
            return None
    when = _ANSWER_TIME.search(clear)
    receiver_time = _answer_time(when.group(1)) if when else None
    seq = int(match["seq"]) if match["seq"] and match["seq"] != "0000" else None
    return Answer(match["kind"], seq, receiver_time, body)


def _answer_time(text: str) -> float | None:
    """The answer's timestamp as epoch seconds; None (logged) when it has the shape but is no date."""
    try:
        moment = datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        log.warning("DC-09 answer's timestamp %r is no valid time; ignored", text)
        return None
    return moment.timestamp()


def exchange(host: str, port: int, frame_bytes: bytes, timeout_s: float, key: bytes | None) -> Answer:
    """Send one frame over a fresh TCP connection and wait for the answer. Raises NoAnswer saying why there is
    none: connection refused, timed out, closed without answer, too long, or not a DC-09 answer."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            conn.settimeout(timeout_s)
            conn.sendall(frame_bytes)
            raw = _read_answer(conn, timeout_s)
    except ConnectionRefusedError:
        raise NoAnswer("connection refused") from None
    except TimeoutError:
        raise NoAnswer("timed out") from None
    except OSError as exc:
        raise NoAnswer(exc.strerror or str(exc) or type(exc).__name__) from None
    answer = parse_answer(raw, key)
    if answer is None:
        raise NoAnswer(f"not a DC-09 answer: {raw[:40]!r}" if raw else "closed without an answer")
    return answer


def _read_answer(conn: socket.socket, timeout_s: float) -> bytes:
    """Bytes up to the answer's CR (or a bare "ACK"-style answer, which has no CR), at most MAX_ANSWER_BYTES."""
    buffer = b""
    deadline = time.monotonic() + timeout_s  # a network wait, not a timing decision: the real clock
    while b"\r" not in buffer and time.monotonic() < deadline:
        chunk = conn.recv(1024)
        if not chunk:
            break
        buffer += chunk
        if len(buffer) > MAX_ANSWER_BYTES:
            raise NoAnswer(f"answer longer than {MAX_ANSWER_BYTES} bytes")
        if re.fullmatch(rb'\s*"\*?[A-Z]{3}"', buffer):
            break
    return buffer
