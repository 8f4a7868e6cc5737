"""The whole agent against a real mosquitto: recordings in, alarms, clips and heartbeats out, nothing lost."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from agent.config import parse_config
from agent.pipeline import Agent
from agent.storage.outbox import Outbox
from common.clock import SystemClock
from drivers.camera.replay import ReplayCamera
from station.monitor import Monitor
from tests.footage import require_footage

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "pid-test-01"


def start_monitor(broker, out_dir: Path | None = None, printer=lambda line: None) -> Monitor:
    monitor = Monitor(broker.url, DEVICE, out_dir, printer=printer)
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, timeout=10), "monitor could not subscribe"
    return monitor


def write_config(path: Path, data_dir: Path, broker_url: str, camera: str = "", extra: str = "") -> Path:
    path.write_text(f"""
device_id = "{DEVICE}"
site_ref = "TEST"
data_dir = "{data_dir}"
{extra}
[broker]
url = "{broker_url}"
reconnect_min_s = 0.5
reconnect_max_s = 2.0
{camera}
""", encoding="utf-8")
    return path


def synthetic_camera(duration_s: float, realtime: bool = True) -> str:
    return ('[camera]\nbackend = "synthetic"\nfps = 10\nwidth = 640\nheight = 360\n'
            f'duration_s = {duration_s}\nrealtime = {str(realtime).lower()}\n')


def pid_agent(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agent", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def phases(monitor: Monitor) -> list[tuple[str, str]]:
    return [(event["event_id"], event["phase"]) for event in monitor.events]


@pytest.mark.broker
@pytest.mark.footage
def test_waving_trees_through_the_whole_agent(mosquitto, tmp_path):
    frames = require_footage("03_wallflower_WavingTrees_raw_bmp/frames")
    config = parse_config({
        "device_id": DEVICE, "data_dir": str(tmp_path / "data"),
        "broker": {"url": mosquitto.url},
        # the recording ends 2 s after the person leaves: a short gap and post-roll let the alarm end inside it
        "events": {"event_gap_s": 0.5}, "recorder": {"pre_roll_s": 5.0, "post_roll_s": 1.0},
    })
    arrivals: list[str] = []  # the monitor prints one line per message, in arrival order
    monitor = start_monitor(mosquitto, tmp_path / "received", printer=arrivals.append)
    clock = SystemClock()
    camera = ReplayCamera(str(frames / "b*.bmp"), clock=clock, fps=15.0, realtime=False)
    summary = Agent(config, camera, clock).run()
    assert summary.delivered and summary.outbox_depth == 0

    assert monitor.wait_for(lambda m: len(m.events) >= 2 and len(m.media) >= 2, timeout=30)
    start, end = monitor.events
    assert (start["phase"], end["phase"]) == ("start", "end") and start["event_id"] == end["event_id"]
    assert 242 <= start["frame"] <= 257 + 15  # raised while the person is in view
    assert end["reason"] == "motion stopped"
    assert start["seq"] < end["seq"]
    # the snapshot went out before the start that names it (an alarm never lacks its image), the clip after it
    media_at = lambda name: next(i for i, line in enumerate(arrivals)
                                 if f"MEDIA {start['event_id']}/{name} " in line)
    first_start = next(i for i, line in enumerate(arrivals) if f"EVENT start {start['event_id']}" in line)
    assert media_at("snapshot.jpg") < first_start < media_at("clip.mp4")
    assert start["snapshot"]["sha256"] == monitor.media[(start["event_id"], "snapshot.jpg")].sha256

    clip = monitor.media[(start["event_id"], "clip.mp4")]
    snapshot = monitor.media[(start["event_id"], "snapshot.jpg")]
    assert clip.verified and snapshot.verified
    assert clip.sha256 == end["clip"]["sha256"] == hashlib.sha256(clip.path.read_bytes()).hexdigest()
    assert snapshot.sha256 == end["snapshot"]["sha256"]
    assert end["clip_frames_dropped"] == 0     # a recording's clip waits for its encoder: nothing left out
    with av.open(str(clip.path)) as container:
        times = [frame.time for frame in container.decode(video=0)]
    alarm_s = (end["frame"] - start["frame"]) / 15.0
    # pre-roll (5 s) + the alarm itself, which includes the event gap and post-roll after the motion
    assert times[-1] - times[0] >= 5.0 + alarm_s - 0.2
    assert monitor.duplicates == 0
    monitor.stop()


@pytest.mark.broker
@pytest.mark.slow
def test_broker_down_then_up_with_agent_restart_delivers_everything_in_order(mosquitto_persistent, tmp_path):
    mosquitto = mosquitto_persistent
    # the receiver's session outlives the outage (as at a monitoring station), so nothing is lost on its side
    # whichever of it and the agent reconnects first
    monitor = Monitor(mosquitto.url, DEVICE, tmp_path / "received", printer=lambda line: None,
                      session="station-1")
    monitor.start()
    assert monitor.wait_for(lambda m: m.subscribed, timeout=10)
    mosquitto.stop()
    data_dir = tmp_path / "data"
    # first life of the agent: a recording with an alarm, broker unreachable -> spooled, then the agent exits
    demo = tmp_path / "demo.mp4"
    from evaluation.demo import write_demo

    write_demo(demo, seconds=25.0)
    config = write_config(tmp_path / "a.toml", data_dir, mosquitto.url)
    first = pid_agent("replay", demo, "--fast", "--config", config)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert "wait in the outbox" in out
    # second life: the unit runs live (synthetic camera in real time) with the broker still down; it alarms
    # at 6 s; the broker comes back 30 s after the agent started
    live = write_config(tmp_path / "b.toml", data_dir, mosquitto.url,
                        camera=synthetic_camera(duration_s=40))
    second = pid_agent("run", "--config", live)
    time.sleep(30.0)  # the outage is real time on a real broker, not timing logic under test
    assert second.poll() is None, second.stderr.read()
    mosquitto.start()
    expected = lambda m: len(m.events) >= 4 and sum(1 for f in m.media.values() if f.verified) >= 4
    assert monitor.wait_for(expected, timeout=60), (phases(monitor), list(monitor.media))
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err

    seqs = [event["seq"] for event in monitor.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    ids = [event["event_id"] for event in monitor.events]
    assert [event["phase"] for event in monitor.events] == ["start", "end", "start", "end"]
    assert ids[0] == ids[1] != ids[2] == ids[3]
    assert monitor.duplicates == 0
    for event_id in (ids[0], ids[2]):
        for name in ("clip.mp4", "snapshot.jpg"):
            assert monitor.media[(event_id, name)].verified
    monitor.stop()


def whole_fragment_on_disk(data_dir: Path) -> bool:
    """A clip is being written and holds at least one whole fragment (moof + mdat) of video."""
    from agent.storage.fragments import top_level_boxes

    parts = list((data_dir / "media").rglob("clip.mp4.part"))
    return bool(parts) and "mdat" in [kind for kind, _, _ in top_level_boxes(parts[0])]


@pytest.mark.broker
@pytest.mark.slow
def test_sigkill_while_writing_a_clip_leaves_a_consistent_outbox(mosquitto, tmp_path):
    data_dir = tmp_path / "data"
    live = write_config(tmp_path / "live.toml", data_dir, mosquitto.url,
                        camera=synthetic_camera(duration_s=60))
    monitor = start_monitor(mosquitto, tmp_path / "received")
    agent = pid_agent("run", "--config", live)
    # the figure appears at 6 s; the clip is being written until the post-roll ends at ~23 s
    started = lambda m: any(e["kind"] == "intrusion" for e in m.events)
    assert monitor.wait_for(started, timeout=30), monitor.events
    deadline = time.monotonic() + 10  # waiting on a real process's file, not timing logic
    while not whole_fragment_on_disk(data_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert whole_fragment_on_disk(data_dir), [(e["kind"], e.get("message")) for e in monitor.events]
    os.kill(agent.pid, signal.SIGKILL)
    agent.wait(timeout=10)
    assert monitor.wait_for(lambda m: m.statuses.get(DEVICE, {}).get("state") == "offline", timeout=60)

    # restart: a short quiet recording; the agent repairs the outbox and closes the open alarm honestly
    quiet = write_config(tmp_path / "quiet.toml", data_dir, mosquitto.url,
                         camera=synthetic_camera(duration_s=3, realtime=False))
    again = pid_agent("run", "--config", quiet)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert "was being recorded when the agent stopped" in err and "incomplete" in err

    assert monitor.wait_for(lambda m: len(m.events) >= 2, timeout=30)
    start, end = monitor.events
    assert start["event_id"] == end["event_id"] and end["phase"] == "end"
    # the clip is kept up to its last whole fragment, and said to be partial
    assert end["incomplete"] is True and end["clip"]["partial"] is True and end["clip"]["name"] == "clip.partial.mp4"
    assert end["clip"]["duration_s"] > 0 and end["snapshot"] == start["snapshot"] is not None
    assert "clip_frames_dropped" not in end
    assert end["seq"] > start["seq"]
    assert (start["event_id"], "clip.mp4") not in monitor.media  # nothing half-written announced as complete
    for name in ("snapshot.jpg", "clip.partial.mp4"):
        assert monitor.wait_for(lambda m, name=name: (start["event_id"], name) in m.media, timeout=30), err
        assert monitor.media[(start["event_id"], name)].verified
    assert not list((data_dir / "media").rglob("*.part"))
    outbox = Outbox(data_dir, 1 << 30, SystemClock())
    try:
        assert outbox.open_alarms() == [] and outbox.depth() == 0
    finally:
        outbox.close()
    monitor.stop()


def test_a_clip_finished_just_before_a_kill_is_sent_with_the_incomplete_end(tmp_path):
    """The window between a clip's rename and its queueing: after a restart the finished clip is not lost."""
    from agent.config import RecorderSettings
    from agent.storage.encoding import ClipWriter
    from evaluation.demo import write_demo

    data_dir = tmp_path / "data"
    outbox = Outbox(data_dir, 1 << 30, SystemClock())
    outbox.open_alarm("ev-killed", {"event_id": "ev-killed", "kind": "intrusion", "frame": 60, "score": 0.1})
    (outbox.media_dir / "ev-killed").mkdir(parents=True)
    writer = ClipWriter(outbox.media_dir / "ev-killed" / "clip.mp4", RecorderSettings(), 10.0, 64, 48)
    for index in range(20):
        writer.add(index / 10, (index * 10 % 255) * np.ones((48, 64, 3), np.uint8))
    finished = writer.close()  # renamed into place; the kill came before it was queued
    outbox.close()
    quiet = tmp_path / "quiet.mp4"
    write_demo(quiet, seconds=3.0, width=160, height=90)  # ends before the figure appears
    config = parse_config({"device_id": DEVICE, "data_dir": str(data_dir)})
    clock = SystemClock()
    summary = Agent(config, ReplayCamera(str(quiet), clock=clock), clock, upload=False).run()
    (end,) = [e for e in summary.events_published if e["kind"] == "intrusion"]
    assert end["event_id"] == "ev-killed" and end["incomplete"] is True
    assert end["clip"] == {"name": "clip.mp4", "bytes": finished.size, "sha256": finished.sha256,
                           "partial": False, "duration_s": 2.0}  # 20 frames at 10 fps
    outbox = Outbox(data_dir, 1 << 30, SystemClock())
    try:
        assert outbox.is_queued(finished.path) and outbox.open_alarms() == []
    finally:
        outbox.close()
