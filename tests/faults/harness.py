"""What the fault tests share: a recording with several alarms, broker kill/stall, and the results file."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.config import RecorderSettings
from agent.storage.encoding import ClipWriter
from common.clock import ManualClock
from drivers.camera.synthetic import SyntheticCamera
from station.monitor import Monitor

LONG = os.environ.get("FAULTS_LONG") == "1"
DEVICE = "pid-fault-01"
SEGMENT_S = 14.0  # one walk: the figure crosses at 6-11 s; the alarm ends by ~12.5 s with the settings below
# a short gap and post-roll let each alarm end inside its segment, so N segments give N alarms
ALARM_SETTINGS = {"events": {"event_gap_s": 0.5}, "recorder": {"pre_roll_s": 3.0, "post_roll_s": 1.0}}


def long_or_short(long: int, short: int) -> int:
    return long if LONG else short


def write_walks(path: Path, walks: int, width: int = 320, height: int = 180, fps: float = 10.0,
                tail_s: float = 0.0) -> Path:
    """An MP4 of `walks` demo segments back to back (one figure crossing the yard per segment), then `tail_s`
    seconds of the empty yard: a replay that ends while the broker is down leaves the rest in the outbox for the
    next run (by design), so a fault test's recording must outlast its fault and the reconnect."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = ClipWriter(path, RecorderSettings(qp=20), fps, width, height)
    camera = SyntheticCamera(clock=ManualClock(), width=width, height=height, fps=fps, duration_s=SEGMENT_S)
    quiet = SyntheticCamera(clock=ManualClock(), width=width, height=height, fps=fps, duration_s=5.0)  # no figure
    with camera, quiet:
        for walk in range(walks):
            for frame in camera.frames():
                writer.add(walk * SEGMENT_S + frame.ts, frame.image)
        start, frames = walks * SEGMENT_S, int(round(tail_s * fps))
        while frames > 0:
            for frame in quiet.frames():
                if frames <= 0:
                    break
                writer.add(start + frame.ts, frame.image)
                frames -= 1
            start += 5.0
    writer.close()
    return path


def kill_broker(broker) -> None:
    """SIGKILL the test's mosquitto (no clean shutdown, no final persistence save), keeping its port."""
    broker.process.send_signal(signal.SIGKILL)
    broker.process.wait(timeout=10)
    broker.process.stderr.close()
    broker.process = None


def sync_persistence(broker) -> None:
    """Make mosquitto write its persistence file after every change, so a SIGKILL loses no acknowledged message
    (like a production broker on synchronous storage); by default it saves only at shutdown."""
    with broker.config.open("a") as config:
        config.write("autosave_interval 1\nautosave_on_changes true\n")


@dataclass
class FaultResult:
    fault: str
    injected: int
    survived: int
    lost: int
    duplicated: int      # the same (event_id, phase) delivered to the station twice after its dedup (must be 0)
    redelivered: int     # resends the station's dedup absorbed (at-least-once delivery; not a fault)
    note: str = ""
    self_test: bool = False  # a run against a deliberately broken build: it passes when it reports a loss


def record(result: FaultResult) -> None:
    """Append one row to the results file `make faults` prints (FAULTS_RESULTS; none in a plain test run)."""
    target = os.environ.get("FAULTS_RESULTS")
    if not target:
        return
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a", encoding="utf-8") as results:
        results.write(json.dumps(asdict(result)) + "\n")


def delivery_problems(monitor: Monitor, expected: list[dict]) -> tuple[list[str], int, int]:
    """What is wrong with what the station received against what the agent queued: (problems, lost, duplicated)."""
    problems = []
    got = [(e["event_id"], e.get("phase")) for e in monitor.events]
    duplicated = len(got) - len(set(got))
    want = [(e["event_id"], e.get("phase")) for e in expected]
    lost = [key for key in want if key not in set(got)]
    if lost:
        problems.append(f"events lost: {lost}")
    if duplicated:
        problems.append(f"{duplicated} event(s) delivered twice")
    seqs = [e["seq"] for e in monitor.events]
    if seqs != sorted(seqs) or len(set(seqs)) != len(seqs):
        problems.append(f"events out of seq order: {seqs}")
    media_lost = 0
    for event in expected:
        for item in ("clip", "snapshot"):
            meta = event.get(item)
            if event.get("phase") != "end" or not isinstance(meta, dict):
                continue
            received = monitor.media.get((event["event_id"], meta["name"]))
            if received is None:
                media_lost += 1
                problems.append(f"media missing: {event['event_id']}/{meta['name']}")
            elif not received.verified or received.sha256 != meta["sha256"]:
                media_lost += 1
                problems.append(f"media corrupt: {event['event_id']}/{meta['name']}")
    unverified = [key for key, media in monitor.media.items() if not media.verified]
    if unverified:
        problems.append(f"media failing their SHA-256: {unverified}")
    return problems, len(lost) + media_lost + len(unverified), duplicated


def media_expected(expected: list[dict]) -> int:
    return sum(1 for e in expected if e.get("phase") == "end" for item in ("clip", "snapshot")
               if isinstance(e.get(item), dict))


def received_all(monitor: Monitor, expected: list[dict], timeout: float) -> None:
    """Wait (on arrivals, bounded by timeout) until the station holds every event and verified media file the run
    published, or the time is up; then stop listening. delivery_problems says what is missing."""
    arrived = lambda m: (len(m.events) >= len(expected)  # noqa: E731
                         and sum(1 for f in m.media.values() if f.verified) >= media_expected(expected))
    monitor.wait_for(arrived, timeout=timeout)
    monitor.stop()


def write_unit_config(path: Path, data_dir: Path, url: str, pre_roll_s: float) -> Path:
    """The config the kill tests run the agent process with: quick reconnects, short alarms."""
    path.write_text(f"""
device_id = "{DEVICE}"
data_dir = "{data_dir}"
[broker]
url = "{url}"
reconnect_min_s = 0.2
reconnect_max_s = 1.0
[events]
event_gap_s = 0.5
[recorder]
pre_roll_s = {pre_roll_s}
post_roll_s = 1.0
""", encoding="utf-8")
    return path
