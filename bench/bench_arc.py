"""ARC reporting latency on loopback: alarm stored in the outbox -> DC-09 ACK from a real pysiaalarm receiver,
and alarm stored -> video-alarm email (with snapshot) accepted by a real aiosmtpd server. Prints figures beside
targets, asserts nothing.

Run: .venv/bin/python bench/bench_arc.py [--alarms N] [--emails M]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiosmtpd.controller import Controller  # noqa: E402
from pysiaalarm import SIAAccount, SIAClient  # noqa: E402

from agent.arc.email import EmailLink  # noqa: E402
from agent.arc.link import Dc09Link  # noqa: E402
from agent.arc.settings import ArcSettings, Dc09Settings, EmailSettings  # noqa: E402
from agent.storage.outbox import Outbox  # noqa: E402
from common.clock import SystemClock  # noqa: E402

ACCOUNT, KEY = "AB1234", b"0123456789ABCDEF"
IDENTITY = {"device_id": "bench", "site_ref": "BENCH"}
TARGET_ACK_P95_S = 1.0
TARGET_EMAIL_P95_S = 2.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def wait_until(condition, timeout: float = 30.0) -> bool:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            return False
        time.sleep(0.0005)
    return True


def bench_dc09(folder: Path, alarms: int, encrypted: bool) -> list[float]:
    port = free_port()
    receiver = SIAClient("127.0.0.1", port, [SIAAccount(ACCOUNT, KEY.decode() if encrypted else None)],
                         lambda event: None)
    receiver.start()
    box = Outbox(folder / ("dc09-aes" if encrypted else "dc09-plain"), 1 << 26, SystemClock())
    settings = ArcSettings(dc09=Dc09Settings(enabled=True, primary=f"127.0.0.1:{port}", account=ACCOUNT,
                                             key_hex=KEY.hex() if encrypted else "", supervision_s=0))
    link = Dc09Link(settings, box, SystemClock(), IDENTITY)
    link.start()
    latencies = []
    try:
        for n in range(alarms):
            started = time.perf_counter()
            box.put_message("event", {**IDENTITY, "event_id": f"e{n}", "kind": "intrusion", "phase": "start"},
                            "event")
            link.notify()
            if not wait_until(lambda n=n: link.delivered > n):
                raise RuntimeError(f"alarm {n} not acknowledged: {link.status()}")
            latencies.append(time.perf_counter() - started)
    finally:
        link.stop()
        receiver.stop()
        box.close()
    return latencies


class Counting:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
        return "250 OK"


def bench_email(folder: Path, emails: int) -> list[float]:
    handler, port = Counting(), free_port()
    server = Controller(handler, hostname="127.0.0.1", port=port)
    server.start()
    box = Outbox(folder / "email", 1 << 28, SystemClock())
    settings = ArcSettings(email=EmailSettings(enabled=True, host="127.0.0.1", port=port, starttls=False,
                                               sender="bench@pid.example", to=("arc@arc.example",)))
    link = EmailLink(settings, box, SystemClock(), IDENTITY)
    link.start()
    latencies = []
    try:
        for n in range(emails):
            snapshot = box.media_dir / f"e{n}" / "snapshot.jpg"
            snapshot.parent.mkdir(parents=True)
            snapshot.write_bytes(os.urandom(150_000))  # about a 1280x720 JPEG
            started = time.perf_counter()
            box.put_message("event", {**IDENTITY, "event_id": f"e{n}", "kind": "intrusion", "phase": "start"},
                            "event")
            box.put_media(f"e{n}", "snapshot.jpg", snapshot, "image/jpeg", 256 * 1024)
            link.notify()
            if not wait_until(lambda n=n: handler.count > n):
                raise RuntimeError(f"email {n} not accepted")
            latencies.append(time.perf_counter() - started)
    finally:
        link.stop()
        server.stop()
        box.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alarms", type=int, default=25)
    parser.add_argument("--emails", type=int, default=20)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-arc-"))
    try:
        for encrypted in (False, True):
            p50, p95 = percentiles(bench_dc09(folder, args.alarms, encrypted))
            label = "AES-128" if encrypted else "plain"
            print(f"DC-09 {label:7s} alarm stored -> ACK over {args.alarms}: p50 {p50 * 1000:6.1f} ms  "
                  f"p95 {p95 * 1000:6.1f} ms   (target p95 <= {TARGET_ACK_P95_S * 1000:.0f} ms)")
        p50, p95 = percentiles(bench_email(folder, args.emails))
        print(f"email with 150 KB snapshot stored -> accepted over {args.emails}: p50 {p50 * 1000:6.1f} ms  "
              f"p95 {p95 * 1000:6.1f} ms   (target p95 <= {TARGET_EMAIL_P95_S * 1000:.0f} ms)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
