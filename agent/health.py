"""Health: what the heartbeat reports about the unit."""

from __future__ import annotations

import shutil
from pathlib import Path

from agent import __version__
from agent.evidence.audit import Head
from agent.loan import DAY_S, LoanBook
from agent.uplink.messages import Heartbeat, Identity
from common.clock import Clock, iso_utc
from common.rate import RateMeter

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
NO_INPUTS = {"pir_active": [], "triggers_active": [], "tamper_open": [], "mains_ok": None}


def cpu_temperature_c(path: Path = THERMAL_ZONE) -> float | None:
    """The SoC temperature where the kernel exposes it (a Pi does; many laptops and CI machines do not)."""
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


class Health:
    """Counts frames and measures real throughput with the injected clock."""

    def __init__(self, clock: Clock, data_dir: Path, window: int = 50) -> None:
        self.clock = clock
        self.data_dir = data_dir
        self.started = clock.monotonic()
        self.frames = 0
        self.last_event_id: str | None = None
        self._frame_rate = RateMeter(max_samples=window)

    def frame_done(self) -> None:
        self.frames += 1
        self._frame_rate.mark(self.clock.monotonic())

    @property
    def fps(self) -> float:
        return round(self._frame_rate.rate(), 2)

    def heartbeat(self, identity: Identity, *, armed: bool, outbox_depth: int, outbox_bytes: int, camera: dict,
                  tamper: str | None, inputs: dict | None, signalling: dict, detector_faults: list[str],
                  audit: Head | None = None, loan: LoanBook | None = None) -> Heartbeat:
        wall = self.clock.wall()
        loan_end = loan.end_wall() if loan is not None else None
        left = max(0.0, loan_end - wall) if loan_end is not None else None
        try:
            disk_free = shutil.disk_usage(self.data_dir).free
        except OSError:
            disk_free = None
        return Heartbeat(
            **identity.model_dump(), ts=iso_utc(self.clock.wall()),
            uptime_s=round(self.clock.monotonic() - self.started, 1), frames=self.frames, fps=self.fps, armed=armed,
            outbox_depth=outbox_depth, outbox_bytes=outbox_bytes, disk_free_bytes=disk_free,
            cpu_temp_c=cpu_temperature_c(), version=__version__, last_event_id=self.last_event_id,
            camera=camera, tamper=tamper, inputs=inputs or NO_INPUTS, signalling=signalling,
            detector_faults=detector_faults, audit_entries=audit.count if audit else None,
            audit_head=audit.sha256 if audit else None,
            loan_ends=iso_utc(loan_end) if loan_end is not None else None,
            loan_days_remaining=round(left / DAY_S, 3) if left is not None else None,
            loan_hours_remaining=round(left / 3600.0, 2) if left is not None else None)
