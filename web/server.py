"""The installer's page server: Starlette on uvicorn, in a thread beside the agent. Static files (web/static) are
public; every /api/ call but login needs the session cookie a correct password gives (it lasts SESSION_S on the
unit's clock). Bodies are read at most MAX_BODY_BYTES far and parsed by agent/security_parse.py: a bad one is a 400
(413 if too large) with its reason.

Starlette because it is small (no ORM, no templates), plain ASGI, serves static files and JSON with what it ships,
and runs on uvicorn, which is in Debian and takes the TLS certificate directly.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agent.config import load_config
from agent.security_parse import Refused, load_json
from web import secrets_store
from web.live import LiveState
from web.settings import CommissioningSettings
from web.zones import ZonesRefused, applies_live, save_zones

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "pid_session"
WRONG_PASSWORD_DELAY_S = 1.0  # slows guessing; the unit's page is on a hotspot, not the internet
MAX_BODY_BYTES = 64 * 1024  # the largest body is the zone list: a few zones of a few dozen points, a few KiB
SESSION_S = 12 * 3600.0  # one working day on site; the installer logs in again the next day
MAX_SESSIONS = 16  # an installer or two with a phone and a laptop; more logins drop the oldest session


class BodyTooLarge(Refused):
    """A request body past MAX_BODY_BYTES, refused before it is all read."""


class Sessions:
    """Login tokens and when they end, on the unit's monotonic clock; at most MAX_SESSIONS, the oldest dropped.
    Used only from the server's event loop (the check comes before a handler goes to the thread pool): no lock."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._ends: dict[str, float] = {}  # token -> end; insertion order is login order

    def new(self) -> str:
        self._forget_ended()
        while len(self._ends) >= MAX_SESSIONS:
            del self._ends[next(iter(self._ends))]
        token = secrets.token_urlsafe(24)
        self._ends[token] = self._monotonic() + SESSION_S
        return token

    def valid(self, token: str) -> bool:
        self._forget_ended()
        return token in self._ends

    def _forget_ended(self) -> None:
        now = self._monotonic()
        for token in [token for token, end in self._ends.items() if end <= now]:
            del self._ends[token]


async def read_json(request: Request) -> dict:
    """The body as a JSON object, read no further than MAX_BODY_BYTES and parsed on the one bounded path."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"body too large ({declared} bytes, at most {MAX_BODY_BYTES})")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BodyTooLarge(f"body too large (more than {MAX_BODY_BYTES} bytes)")
    value = load_json(bytes(body), MAX_BODY_BYTES, "body")
    if not isinstance(value, dict):
        raise Refused("body is not a JSON object")
    return value


Handler = Callable[[Request], Response | Awaitable[Response]]


class Api:
    """The /api/ endpoints. Each is wrapped by `endpoint`: the session check (all but login) and a refused body
    answered 400 (413 when too large) with its reason, so a hostile request is an answer, never a 500."""

    def __init__(self, live: LiveState, config_path: Path, password: str, secure_cookie: bool) -> None:
        self.live, self.config_path, self.password, self.secure_cookie = live, config_path, password, secure_cookie
        self.sessions = Sessions(live.clock.monotonic)

    def endpoint(self, handler: Handler, login_needed: bool = True) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            if login_needed and not self.sessions.valid(request.cookies.get(COOKIE, "")):
                return JSONResponse({"error": "log in first"}, status_code=401)
            try:
                if inspect.iscoroutinefunction(handler):
                    return await handler(request)
                return await run_in_threadpool(handler, request)  # as Starlette runs a plain function
            except Refused as refusal:
                log.warning("commissioning: %s %s refused: %s", request.method, request.url.path, refusal)
                return JSONResponse({"error": str(refusal)}, status_code=413 if isinstance(refusal, BodyTooLarge)
                                    else 400)
        return answer

    async def login(self, request: Request) -> Response:
        given = str((await read_json(request)).get("password", ""))
        client = request.client.host if request.client else "?"
        if not hmac.compare_digest(given.encode(), self.password.encode()):
            await asyncio.sleep(WRONG_PASSWORD_DELAY_S)  # not time.sleep: that would stall every request
            log.warning("commissioning: wrong password from %s", client)
            return JSONResponse({"error": "wrong password"}, status_code=403)
        log.warning("audit: commissioning page login from %s", client)
        response = JSONResponse({"ok": True})
        response.set_cookie(COOKIE, self.sessions.new(), max_age=int(SESSION_S), httponly=True,
                            secure=self.secure_cookie, samesite="strict")
        return response

    def frame(self, request: Request) -> Response:
        jpeg = self.live.jpeg()
        if jpeg is None:
            return Response(status_code=503, headers={"Retry-After": "1"})
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    def mask(self, request: Request) -> Response:
        png = self.live.mask_png()
        if png is None:
            return Response(status_code=503, headers={"Retry-After": "1"})
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    def state(self, request: Request) -> Response:
        return JSONResponse(self.live.state())

    def zones(self, request: Request) -> Response:
        detection = load_config(self.config_path).detection  # the person heights a zone without its own falls back to
        return JSONResponse({"zones": [zone.model_dump(mode="json") for zone in detection.zones],
                             "person_height": {"far": detection.person_height, "near": detection.person_height_near}})

    async def save(self, request: Request) -> Response:
        body = await read_json(request)
        try:
            config = save_zones(self.config_path, body.get("zones"))
        except ZonesRefused as refusal:
            return JSONResponse({"errors": refusal.problems}, status_code=422)
        live_now = applies_live(self.live.agent, config)
        if live_now:
            self.live.apply(config)
        return JSONResponse({"saved": len(config.detection.zones), "applied": "now" if live_now else "on restart"})

    async def walk(self, request: Request) -> Response:
        on = bool((await read_json(request)).get("on"))
        self.live.walk.start() if on else self.live.walk.stop()
        log.warning("audit: walk test %s from the commissioning page", "started" if on else "stopped")
        return JSONResponse(self.live.walk.snapshot())


def build_app(live: LiveState, config_path: Path, password: str, secure_cookie: bool) -> Starlette:
    api = Api(live, config_path, password, secure_cookie)
    routes = [Route("/api/login", api.endpoint(api.login, login_needed=False), methods=["POST"]),
              Route("/api/frame.jpg", api.endpoint(api.frame)), Route("/api/mask.png", api.endpoint(api.mask)),
              Route("/api/state", api.endpoint(api.state)),
              Route("/api/zones", api.endpoint(api.zones), methods=["GET"]),
              Route("/api/zones", api.endpoint(api.save), methods=["POST"]),
              Route("/api/walk", api.endpoint(api.walk), methods=["POST"]),
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
