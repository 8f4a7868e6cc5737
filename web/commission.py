"""`pid-agent commission`: the installer's page on its own, the agent behind it on a replay (looped) or the
synthetic scene, never contacting the broker. And `serving()`, for `pid-agent run` with [commissioning] enabled."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path

from agent.config import AgentConfig, load_config, parse_config
from common.clock import SystemClock
from web.live import LiveState

log = logging.getLogger(__name__)

LIVE_BACKENDS = ("picamera2", "opencv", "multi")


@contextlib.contextmanager
def serving(agent, config: AgentConfig, config_path: Path):
    """The page beside a running agent (its LiveState attached) until the block ends."""
    from web.server import CommissioningServer

    live = LiveState(config.commissioning, agent.clock)
    live.attach(agent)
    server = CommissioningServer(config.commissioning, live, config_path, config.data_dir)
    server.start()
    try:
        yield live
    finally:
        server.stop()


def bench_config(config_path: Path, source: str | None) -> AgentConfig:
    """The unit's config, with the camera replaced by `source` (looped, paced) or, for a live camera, the synthetic
    scene: commissioning on a bench needs no camera."""
    config = load_config(config_path)
    data = config.model_dump(mode="json", exclude_none=True)
    if source:
        data["camera"].update(backend="replay", source=source, realtime=True)
    elif config.camera.backend in LIVE_BACKENDS:
        data["camera"].update(backend="synthetic", realtime=True, sources=[])
    else:
        data["camera"]["realtime"] = True
    if config.camera.backend == "multi" and data["camera"]["backend"] != "multi":
        data["panorama"]["enabled"] = False
    return parse_config(data, origin=f"{config_path} (commissioning camera)")


def run_commission(config_path: Path, source: str | None) -> int:
    from agent.pipeline import Agent
    from drivers.camera import open_camera
    from web.server import CommissioningServer

    config = bench_config(config_path, source)
    clock = SystemClock()
    live = LiveState(config.commissioning, clock)
    server = CommissioningServer(config.commissioning, live, config_path, config.data_dir)
    stop = threading.Event()
    current: list = []

    def request_stop(signum, _frame):
        stop.set()
        for agent in current:
            agent.stop()
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server.start()
    where = config.commissioning.password_file or Path(config.data_dir) / "commissioning" / "password"
    print(f"commissioning page at {server.url} (password in {where})", flush=True)
    try:
        while not stop.is_set():  # the recording plays again and again; zones saved meanwhile are read anew
            agent = Agent(config, open_camera(config, clock), clock, upload=False)
            current[:] = [agent]
            live.attach(agent)
            agent.run()
            config = bench_config(config_path, source)
    finally:
        server.stop()
    return 0
