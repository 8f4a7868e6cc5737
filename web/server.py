"""The installer's page server: Starlette on uvicorn, in a thread beside the agent. Static files (web/static) are
public; every /api/ call but login needs the session cookie a correct password gives.

Starlette because it is small (no ORM, no templates), plain ASGI, serves static files and JSON with what it ships,
and runs on uvicorn, which is in Debian and takes the TLS certificate directly.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import threading
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agent.config import load_config
from web import secrets_store
from web.live import LiveState
from web.settings import CommissioningSettings
from web.zones import ZonesRefused, applies_live, save_zones

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "pid_session"
WRONG_PASSWORD_DELAY_S = 1.0  # slows guessing; the unit's page is on a hotspot, not the internet


def build_app(live: LiveState, config_path: Path, password: str, secure_cookie: bool) -> Starlette:
    sessions: set[str] = set()

    def authorised(request: Request) -> bool:
        return request.cookies.get(COOKIE, "") in sessions

    def refused() -> JSONResponse:
        return JSONResponse({"error": "log in first"}, status_code=401)

    async def login(request: Request) -> Response:
        body = await request.json()
        given = str(body.get("password", "")) if isinstance(body, dict) else ""
        if not hmac.compare_digest(given.encode(), password.encode()):
            await asyncio.sleep(WRONG_PASSWORD_DELAY_S)  # not time.sleep: that would stall every request
            log.warning("commissioning: wrong password from %s", request.client.host if request.client else "?")
            return JSONResponse({"error": "wrong password"}, status_code=403)
        token = secrets.token_urlsafe(24)
        sessions.add(token)
        log.warning("audit: commissioning page login from %s", request.client.host if request.client else "?")
        response = JSONResponse({"ok": True})
        response.set_cookie(COOKIE, token, httponly=True, secure=secure_cookie, samesite="strict")
        return response

    def frame(request: Request) -> Response:
        if not authorised(request):
            return refused()
        jpeg = live.jpeg()
        if jpeg is None:
            return Response(status_code=503, headers={"Retry-After": "1"})
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    def mask(request: Request) -> Response:
        if not authorised(request):
            return refused()
        png = live.mask_png()
        if png is None:
            return Response(status_code=503, headers={"Retry-After": "1"})
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    def state(request: Request) -> Response:
        return JSONResponse(live.state()) if authorised(request) else refused()

    def zones(request: Request) -> Response:
        if not authorised(request):
            return refused()
        config = load_config(config_path)
        detection = config.detection  # the person heights a zone without its own falls back to
        return JSONResponse({"zones": [zone.model_dump(mode="json") for zone in detection.zones],
                             "person_height": {"far": detection.person_height, "near": detection.person_height_near}})

    async def save(request: Request) -> Response:
        if not authorised(request):
            return refused()
        body = await request.json()
        try:
            config = save_zones(config_path, body.get("zones") if isinstance(body, dict) else None)
        except ZonesRefused as refusal:
            return JSONResponse({"errors": refusal.problems}, status_code=422)
        live_now = applies_live(live.agent, config)
        if live_now:
            live.apply(config)
        return JSONResponse({"saved": len(config.detection.zones), "applied": "now" if live_now else "on restart"})

    async def walk(request: Request) -> Response:
        if not authorised(request):
            return refused()
        body = await request.json()
        on = bool(body.get("on")) if isinstance(body, dict) else False
        live.walk.start() if on else live.walk.stop()
        log.warning("audit: walk test %s from the commissioning page", "started" if on else "stopped")
        return JSONResponse(live.walk.snapshot())

    routes = [Route("/api/login", login, methods=["POST"]), Route("/api/frame.jpg", frame),
              Route("/api/mask.png", mask),
              Route("/api/state", state), Route("/api/zones", zones, methods=["GET"]),
              Route("/api/zones", save, methods=["POST"]), Route("/api/walk", walk, methods=["POST"]),
              Mount("/", StaticFiles(directory=STATIC, html=True))]
    return Starlette(routes=routes)


class CommissioningServer:
    """The page, served in a daemon thread until stop()."""

    def __init__(self, settings: CommissioningSettings, live: LiveState, config_path: Path, data_dir: Path) -> None:
        self.settings = settings
        password = secrets_store.password(settings, data_dir)
        ssl = {}
        if settings.tls:
            cert, key = secrets_store.certificate(settings.host, data_dir)
            ssl = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        app = build_app(live, Path(config_path), password, secure_cookie=settings.tls)
        self._server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                                     lifespan="off", access_log=False, **ssl))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.settings.tls else 'http'}://{self.settings.host}:{self.settings.port}/"

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._server.run, name="commissioning", daemon=True)
        self._thread.start()
        ready = threading.Event()
        for _ in range(int(timeout_s / 0.05)):  # uvicorn says `started` once it listens
            if self._server.started or not self._thread.is_alive():
                break
            ready.wait(0.05)
        if not self._server.started:
            raise OSError(f"commissioning page could not listen on {self.settings.host}:{self.settings.port}")
        log.warning("commissioning page at %s", self.url)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
