"""What the page shows, fed by the agent's frame loop: the latest picture (downscaled JPEG), its boxes, and a
heartbeat summary. Work is done only while somebody watches (a request in the last WATCH_S seconds), at most
view_fps times a second; with nobody watching a frame costs one clock read. Also the walk test's detections, and
zones saved on the page, which are put into the running agent between frames (web/zones.py apply_live).
"""

from __future__ import annotations

import logging
import threading

import cv2
import numpy as np

from agent.events import AlarmStarted
from agent.health import THERMAL_ZONE, cpu_temperature_c
from common.clock import Clock, iso_utc
from web.panorama_view import PanoramaPicture
from web.settings import CommissioningSettings
from web.walk import WalkTest

log = logging.getLogger(__name__)

WATCH_S = 5.0    # a page polls every fraction of a second; after this long without a request nobody watches
STATUS_S = 1.0   # the heartbeat summary is read at most this often (the outbox count is an SQLite query)
JPEG_QUALITY = 70
MASK_RGBA = (255, 48, 48, 140)  # the motion mask's pixels on the page: translucent red over the picture


class LiveState:
    def __init__(self, settings: CommissioningSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.walk = WalkTest(clock, settings.walk_test_minutes)
        self.agent = None
        self._lock = threading.Lock()
        self._watched_until = -1.0
        self._next_picture = -1.0
        self._next_status = -1.0
        self._jpeg: bytes | None = None
        self._mask_png: bytes | None = None
        self._mask_wanted_until = -1.0  # the mask is encoded only while the page shows it
        self.thermal_zone = THERMAL_ZONE
        self._view: dict = {"boxes": [], "frame": None}
        self._status: dict = {}
        self._pending = None  # a validated AgentConfig with new zones, applied by the frame loop
        self._panorama: PanoramaPicture | None = None  # the 360° unit's strip, bearings and sectors

    # the agent's side (the frame-loop thread, under the unit's lock) ------------------------------------------
    def attach(self, agent) -> None:
        """Feed from this agent (agent/pipeline.py Agent.viewers)."""
        self.agent = agent
        agent.viewers.append(self.viewer)
        agent.reactions_walk_test = self.walk_test_active  # alarms marked walk_test; the ARC links skip them

    def viewer(self, frame, analysis) -> None:
        if self._pending is not None:
            self._apply_pending()
        if analysis is not None and (analysis.result.boxes or analysis.events) and self.walk.active():
            if self._walk_detections(analysis, frame.ts):
                self._blink(frame.ts)
        now = self.clock.monotonic()
        if now >= self._watched_until or now < self._next_picture:
            return  # nobody watches, or the last picture is recent enough
        self._next_picture = now + 1.0 / self.settings.view_fps
        self._picture(frame, analysis)
        if now >= self._next_status:
            self._next_status = now + STATUS_S
            status = self._read_status()
            with self._lock:
                self._status = status

    def _picture(self, frame, analysis) -> None:
        strip = self._strip(frame.image)
        if strip is not None:  # the 360° unit: the strip the detector sees, where its zones are drawn
            small, boxes = strip, self._strip_boxes(analysis)
        else:
            small, boxes = self._downscaled(frame.image), self._boxes(frame, analysis)
        ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        mask_png = self._mask(analysis, small.shape[:2]) if self.clock.monotonic() < self._mask_wanted_until else None
        with self._lock:
            if ok:
                self._jpeg = jpeg.tobytes()
            if mask_png is not None:
                self._mask_png = mask_png
            self._view = {"boxes": boxes, "frame": frame.index, "motion": bool(analysis and analysis.result.motion),
                          **({"scale": self._panorama.scale()} if strip is not None else {})}

    def _strip(self, image: np.ndarray) -> np.ndarray | None:
        """The 360° unit's live picture (None for a plain camera); the analyzer exists once the agent runs."""
        analyzer = getattr(self.agent, "analyzer", None)
        view = analyzer.view if analyzer is not None else None
        if view is None:
            return None
        if self._panorama is None or self._panorama.view is not view:
            self._panorama = PanoramaPicture(view, self.settings.view_width)
        return self._panorama.picture(image)

    def _downscaled(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        scale = min(1.0, self.settings.view_width / width)
        return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)

    @staticmethod
    def _boxes(frame, analysis) -> list[dict]:
        luma_h, luma_w = frame.luma.shape[:2]
        return [] if analysis is None else [
            {"x": b.x / luma_w, "y": b.y / luma_h, "w": b.w / luma_w, "h": b.h / luma_h, "zone": b.zone,
             "class": b.label} for b in analysis.result.boxes]

    def _strip_boxes(self, analysis) -> list[dict]:
        """Boxes on the strip; each Location stands for the box of the same place in result.boxes."""
        if analysis is None:
            return []
        boxes = self._panorama.boxes(analysis.locations)
        labels = [box.label for box in analysis.result.boxes]
        return [{**box, "class": labels[index] if index < len(labels) else "unknown"}
                for index, box in enumerate(boxes)]

    @staticmethod
    def _mask(analysis, size: tuple[int, int]) -> bytes | None:
        """The motion detector's foreground pixels as a PNG the size of the live picture, transparent elsewhere."""
        mask = None if analysis is None else analysis.result.mask
        if mask is None:
            return None
        on = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0
        red, green, blue, alpha = MASK_RGBA
        bgra = np.zeros((*size, 4), np.uint8)
        bgra[on] = (blue, green, red, alpha)
        ok, png = cv2.imencode(".png", bgra)
        return png.tobytes() if ok else None

    def _read_status(self) -> dict:
        agent = self.agent
        if agent is None:
            return {}
        status = agent.analyzer.status()
        uplink = agent.uplink
        return {"armed": status.armed, "phase": status.phase.value,
                "alarm": status.active_event_id, "tamper": status.tamper,
                "link": "offline" if uplink is None else ("connected" if uplink.connected else "down"),
                "outbox": agent.outbox.depth(), "clock": iso_utc(self.clock.wall()),
                "temp_c": cpu_temperature_c(self.thermal_zone),
                "walk_test": self.walk.active()}

    def _walk_detections(self, analysis, ts: float) -> bool:
        """The walk list's new lines from this frame; True if there was one."""
        bearings = [location.bearing_deg for location in analysis.locations]
        added = False
        for index, box in enumerate(analysis.result.boxes):
            bearing = round(bearings[index], 1) if index < len(bearings) else None
            added |= self.walk.add(box.zone, box.label, bearing, frame_ts=ts)
        for event in analysis.events:
            if isinstance(event, AlarmStarted):
                label = analysis.result.boxes[0].label if analysis.result.boxes else "unknown"
                added |= self.walk.add(analysis.result.zone or "", label, alarm=True, frame_ts=ts)
        return added

    def _blink(self, ts: float) -> None:
        """The unit's strobe flashes once (the frame loop's thread: the Signaller is not shared with the page's)."""
        signaller = getattr(self.agent, "signaller", None)  # made when the agent's run opens its GPIO
        if signaller is not None:
            signaller.blink(ts)

    def _apply_pending(self) -> None:
        from web.zones import apply_live

        with self._lock:
            config, self._pending = self._pending, None
        if config is not None and self.agent is not None:
            apply_live(self.agent, config)

    # the page's side (server threads) ---------------------------------------------------------------------------
    def watched(self) -> None:
        """A request from the page: keep the pictures coming for WATCH_S."""
        self._watched_until = self.clock.monotonic() + WATCH_S

    def jpeg(self) -> bytes | None:
        self.watched()
        with self._lock:
            return self._jpeg

    def mask_png(self) -> bytes | None:
        """The latest motion mask; asking keeps it coming (with the pictures) for WATCH_S."""
        self.watched()
        self._mask_wanted_until = self._watched_until
        with self._lock:
            return self._mask_png

    def state(self) -> dict:
        self.watched()
        with self._lock:
            view, status = dict(self._view), dict(self._status)
        status["walk_test"] = self.walk.active()
        return {"view": view, "status": status, "walk": self.walk.snapshot()}

    def apply(self, config) -> None:
        """New zones, validated: put into the agent at its next frame."""
        with self._lock:
            self._pending = config

    def walk_test_active(self) -> bool:
        """For the lead: mark alarms `test` on MQTT and hold back the ARC link while this is True."""
        return self.walk.active()
