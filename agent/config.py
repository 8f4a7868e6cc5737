"""The agent's configuration: one TOML file, validated at start-up, unknown keys rejected.

Each section's schema is a pydantic model with bounds and descriptions. Runtime state never lives here.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Literal, Mapping

from pydantic import Field, ValidationError, field_validator, model_validator

from agent.arc.settings import ArcSettings
from agent.commissioning_settings import CommissioningSettings
from agent.loan import LoanSettings
from agent.schedule import ScheduleSettings
from agent.security import CommandSettings
from agent.signalling import SignallingSettings, signalling_problems
from agent.uplink.homeassistant import HomeAssistantSettings
from common.errors import ConfigError
from common.settings import Section, describe_errors
from drivers.camera.opencv_capture import OpenCVSettings
from drivers.camera.picam import PiCameraSettings
from drivers.camera.watchdog import WatchdogSettings
from drivers.gpio import GpioSettings
from models.fusion import FusionSettings, zone_problems
from models.motion import MotionSettings
from models.panorama import PanoramaSettings


class CameraSourceSettings(Section):
    """One of the fixed cameras of a multi-camera unit ([[camera.sources]])."""

    name: str = Field(min_length=1, max_length=64, description="Its name in [[panorama.cameras]].")
    backend: Literal["replay", "opencv", "picamera2"] = Field(description="Driver of this camera.")
    source: str = Field("", description="replay: video/images; opencv: device index or URL.")
    camera_num: int = Field(0, ge=0, le=7, description="picamera2: which camera connector.")


class CameraSettings(Section):
    backend: Literal["replay", "synthetic", "picamera2", "opencv", "multi"] = Field(
        "synthetic", description="Which camera driver produces frames (see drivers/camera).")
    source: str = Field("", description="Replay: video file, image folder or glob. opencv: device index or URL.")
    fps: float = Field(10.0, gt=0, le=120, description="Frame rate; for image sequences and synthetic scenes, "
                                                        "the rate frames are timed at.")
    realtime: bool = Field(True, description="Replay: pace frames at fps (True) or run as fast as possible.")
    detect_width: int = Field(320, ge=32, le=1920, description="Width in pixels of the luma image used for detection.")
    width: int = Field(1280, ge=64, le=4096, description="Full-size frame width (live and synthetic cameras).")
    height: int = Field(720, ge=48, le=4096, description="Full-size frame height (live and synthetic cameras).")
    duration_s: float = Field(20.0, gt=0, description="Synthetic camera: length of the rendered scene.")
    sources: tuple[CameraSourceSettings, ...] = Field((), description="multi: the fixed cameras around the pole, "
                                                                      "read as one side-by-side picture.")


class EventSettings(Section):
    armed: bool = Field(True, description="Whether intrusion alarms are raised at start-up.")
    min_motion_frames: int = Field(3, ge=1, le=100, description="Consecutive motion frames needed to raise an alarm.")
    event_gap_s: float = Field(2.0, ge=0, le=60, description="Motion that pauses for less than this stays one alarm.")
    max_alarm_s: float = Field(120.0, gt=0, le=3600, description="Longest an alarm may stay active before it is ended.")
    tamper_hold_s: float = Field(5.0, ge=0, le=600, description="A camera tamper condition must persist this long "
                                                               "to raise a tamper event, and be gone this long to "
                                                               "restore (the one tamper debounce).")
    scene_change_quiet_s: float = Field(30.0, ge=0, le=3600, description="At most one scene-change event per this "
                                                                         "many seconds (lights flicker, IR toggles).")
    animal_quiet_s: float = Field(30.0, ge=0, le=3600, description="At most one animal event per this many seconds "
                                                                   "(detection.animals = 'report').")
    tampered_motion_s: float = Field(1.0, ge=0, le=60, description="While a tamper condition is held (the view "
                                                                   "is not the one learnt: turned, covered, "
                                                                   "defocused), an alarm starts only on motion "
                                                                   "sustained this long.")
    update_interval_s: float = Field(0.0, ge=0, le=3600, description="A running alarm sends an `update` event "
                                                                     "(boxes, labels, score) at most this often; "
                                                                     "0: none (start and end only), else >= 1.")

    @model_validator(mode="after")
    def _updates_at_most_1_hz(self) -> "EventSettings":
        if 0 < self.update_interval_s < 1:
            raise ValueError(f"update_interval_s ({self.update_interval_s}) must be 0 (off) or at least 1 (1 Hz)")
        return self


#: x264's speed presets, fastest first
X264Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]


class RecorderSettings(Section):
    pre_roll_s: float = Field(5.0, ge=0, le=60, description="Seconds of video kept before the alarm is raised.")
    post_roll_s: float = Field(10.0, ge=0, le=120, description="Seconds recorded after the alarm's motion ends.")
    codec: str = Field("libx264", description="PyAV encoder; 'h264_v4l2m2m' uses a Pi 4's hardware encoder.")
    rate_control: Literal["qp", "crf"] = Field(
        "qp", description="x264's quality rule: 'qp' one constant quantizer (the same detail kept in every frame, "
                          "~40 % less CPU and bytes than crf 26 on a dark, noisy night scene: README, Performance), "
                          "'crf' a constant rate factor (x264 adapts the quantizer to each frame's complexity; "
                          "a [recorder] that sets crf and not rate_control means 'crf').")
    qp: int = Field(24, ge=0, le=51, description="x264 constant quantizer with rate_control = 'qp' (lower = better "
                                                 "quality, larger file).")
    crf: int = Field(26, ge=0, le=51, description="x264 constant rate factor with rate_control = 'crf' (lower = "
                                                  "better quality, larger file).")
    preset: X264Preset = Field(
        "ultrafast", description="x264 speed preset. 'ultrafast' keeps 1280x720 at 10 fps under 40 % of a Pi 4 "
                                 "core even on a noisy night scene (cost per preset: README, Performance).")
    threads: int = Field(
        1, ge=0, le=16, description="x264 threads; 1 keeps the clip on one core beside the frame loop and costs "
                                    "the least memory; 0 lets x264 choose (1.5 per core).")
    pre_roll_max_bytes: int = Field(
        16 * 1024 * 1024, ge=0, le=512 * 1024 * 1024,
        description="Cap of the JPEG pre-roll ring; when full, its oldest frames go first (a shorter pre-roll, "
                    "logged). 1280x720 at 10 fps, quality 85 costs about 1 MiB per second.")
    clip_queue_bytes: int = Field(
        6 * 1024 * 1024, ge=2 * 1024 * 1024, le=256 * 1024 * 1024,
        description="Frames waiting for the clip's encoder: as JPEG while it encodes the pre-roll (~90 kB each at "
                    "1280x720), then raw yuv420p (1.3 MiB each); beyond it, frames are dropped from the clip (and "
                    "counted), never from detection.")
    buffer_jpeg_quality: int = Field(85, ge=30, le=100, description="JPEG quality of frames held in the pre-roll ring.")
    snapshot_jpeg_quality: int = Field(90, ge=30, le=100, description="JPEG quality of the alarm snapshot.")

    @model_validator(mode="before")
    @classmethod
    def _crf_alone_means_crf(cls, data: object) -> object:
        # a unit's config from before rate_control says `crf = 26`: it keeps the quality rule it was set up with
        if isinstance(data, dict) and "crf" in data and "rate_control" not in data:
            if "qp" in data:   # which one did the installer mean? refuse rather than silently drop one of them
                raise ValueError("sets both qp and crf: set rate_control ('qp' or 'crf') to say which one is used")
            return {**data, "rate_control": "crf"}
        return data


class TlsSettings(Section):
    ca_file: Path | None = Field(None, description="CA bundle that signs the broker's certificate.")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="Client private key (mutual TLS).")
    insecure: bool = Field(False, description="Skip hostname verification (bench testing only).")

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _paths_no_nul(cls, path: Path | None) -> Path | None:
        return _no_nul(path)


def _no_nul(path: Path | None) -> Path | None:
    if path is not None and "\0" in str(path):
        raise ValueError("a path must not contain a NUL character")
    return path


def topic_root_problem(root: str) -> str | None:
    """Why a topic root template cannot work (MQTT wildcards, traversal, stray braces), or None."""
    if any(char in root for char in "+#\0"):
        return "must not contain MQTT wildcards (+ #) or NUL"
    rest = root.replace("{device_id}", "")
    if "{" in rest or "}" in rest:
        return "braces are only allowed as {device_id}"
    levels = root.strip("/").split("/")
    if not root.strip("/") or any(level in ("", ".", "..") for level in levels):
        return "levels must be non-empty and not '.' or '..'"
    return None


_BROKER_URL = r"^mqtts?://[^/:@\s]+(:\d{1,5})?/?$"  # no credentials in the URL (they go in username/password)


class BrokerSettings(Section):
    url: str = Field("mqtt://127.0.0.1:1883", pattern=_BROKER_URL,
                     description="Broker address, mqtt://host:port or mqtts://host:port.")
    urls: tuple[Annotated[str, Field(pattern=_BROKER_URL)], ...] = Field(
        (), description="Fallback brokers (other nodes of a cluster), tried in turn after url when the current one "
                        "is unreachable; same credentials and TLS as url.")
    topic_root: str = Field("pids/{device_id}", description="Topic prefix; {device_id} is replaced.")
    username: str | None = Field(None, description="MQTT username.")
    password: str | None = Field(None, description="MQTT password.")
    tls: TlsSettings | None = Field(None, description="TLS settings; required for mqtts:// unless defaults suffice.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive; the Last Will fires after ~1.5x this.")
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="First reconnect delay.")
    reconnect_max_s: float = Field(60.0, gt=0, le=3600, description="Cap of the exponential reconnect delay.")
    chunk_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024, description="Media chunk size.")
    inflight: int = Field(16, ge=1, le=1000, description="QoS 1 messages in flight before waiting for acks.")

    @field_validator("url")
    @classmethod
    def _port_in_range(cls, url: str) -> str:
        rest = url.split("://", 1)[1].rstrip("/")
        if ":" in rest and not 1 <= int(rest.split(":")[1]) <= 65535:
            raise ValueError(f"port must be 1-65535, got {rest.split(':')[1]}")
        return url

    @field_validator("topic_root")
    @classmethod
    def _topic_root_usable(cls, root: str) -> str:
        problem = topic_root_problem(root)
        if problem:
            raise ValueError(problem)
        return root

    @model_validator(mode="after")
    def _backoff_order(self) -> "BrokerSettings":
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(f"reconnect_min_s ({self.reconnect_min_s}) must not exceed reconnect_max_s "
                             f"({self.reconnect_max_s})")
        return self

    @model_validator(mode="after")
    def _one_scheme(self) -> "BrokerSettings":
        mixed = [url for url in self.urls if url.split("://")[0] != self.url.split("://")[0]]
        if mixed:
            raise ValueError(f"urls {mixed} must use the same scheme as url ({self.url}): one TLS setting for all")
        return self

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rstrip("/").split(":")[0]

    @property
    def port(self) -> int:
        return self.address(self.url)[1]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of url, then of each fallback in urls: the order the uplink tries them."""
        return [self.address(url) for url in (self.url, *self.urls)]

    @staticmethod
    def address(url: str) -> tuple[str, int]:
        rest = url.split("://", 1)[1].rstrip("/")
        host, _, port = rest.partition(":")
        return host, int(port) if port else (8883 if url.startswith("mqtts") else 1883)

    @property
    def use_tls(self) -> bool:
        return self.url.startswith("mqtts") or self.tls is not None


def insecure_transport(broker: BrokerSettings) -> list[tuple[str, str]]:
    """(key, why) for each way these settings expose the unit's link: a password sent over plain mqtt://, or a
    broker certificate not checked against its host name. Said loudly at start-up, refused when
    security.allow_insecure_transport is false."""
    found = []
    if broker.password is not None and not broker.use_tls:
        found.append(("broker.password", f"sent in clear text over plain {broker.url} (use mqtts:// or [broker.tls])"))
    if broker.use_tls and broker.tls is not None and broker.tls.insecure:
        found.append(("broker.tls.insecure", "the broker's certificate is not checked against its host name: "
                                             "anyone on the path can pose as the broker"))
    return found


class SecuritySettings(Section):
    allow_insecure_transport: bool = Field(True, description="false: refuse to start with a password over plain "
                                                             "mqtt:// or broker.tls.insecure (otherwise a loud "
                                                             "warning at start-up).")


class OutboxSettings(Section):
    max_bytes: int = Field(2 * 1024**3, ge=1024 * 1024,
                           description="Most bytes the outbox may occupy on disk (database, WAL, media, the clip "
                                       "being recorded, the reserve); oldest heartbeats are dropped first, "
                                       "alarms last.")
    reserve_bytes: int = Field(512 * 1024, ge=0, le=64 * 1024 * 1024,
                               description="Part of max_bytes kept free (a reserve file) for alarm events: only "
                                           "an alarm may spend it; it is put back once there is room. At most "
                                           "an eighth of max_bytes is used.")
    retention_days: float = Field(31.0, gt=0, le=3650,
                                  description="Media older than this are deleted (each deletion audited), "
                                              "except those put on hold by a signed `hold` command.")


class HeartbeatSettings(Section):
    interval_s: float = Field(60.0, ge=1, le=86400, description="Seconds between heartbeats.")


class AgentConfig(Section):
    device_id: str = Field("pid-demo-001", pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                           description="Unique unit id; used in topics and client id.")
    site_ref: str = Field("DEMO", max_length=128, description="Site reference of the current loan.")
    data_dir: Path = Field(Path("var/pid-agent"), description="Where the outbox database and media live.")
    camera: CameraSettings = CameraSettings()
    detection: MotionSettings = MotionSettings()
    events: EventSettings = EventSettings()
    recorder: RecorderSettings = RecorderSettings()
    broker: BrokerSettings = BrokerSettings()
    outbox: OutboxSettings = OutboxSettings()
    heartbeat: HeartbeatSettings = HeartbeatSettings()
    panorama: PanoramaSettings = PanoramaSettings()
    picamera2: PiCameraSettings = PiCameraSettings()
    opencv: OpenCVSettings = OpenCVSettings()
    camera_watchdog: WatchdogSettings = WatchdogSettings()
    gpio: GpioSettings = GpioSettings()
    fusion: FusionSettings = FusionSettings()
    signalling: SignallingSettings = SignallingSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    arc: ArcSettings = ArcSettings()
    loan: LoanSettings = LoanSettings()
    commands: CommandSettings = CommandSettings()
    security: SecuritySettings = SecuritySettings()
    commissioning: CommissioningSettings = CommissioningSettings()
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()

    @field_validator("data_dir")
    @classmethod
    def _data_dir_no_nul(cls, path: Path) -> Path:
        return _no_nul(path)

    @field_validator("device_id")
    @classmethod
    def _device_id_not_a_path_step(cls, device_id: str) -> str:
        if device_id.strip(".") == "":
            raise ValueError("device_id must not be made of dots only ('.', '..')")
        return device_id

    @model_validator(mode="after")
    def _home_assistant_node_is_the_device_id(self) -> "AgentConfig":
        # the discovery topics' node must be the device id for the broker's ACL to confine the unit to its own
        # (docs/mqtt.md); Home Assistant's node ids have no '.', and a unit thrown off for publishing outside
        # its ACL would lose its uplink at every reconnect
        if self.homeassistant.enabled and "." in self.device_id:
            raise ValueError(f"homeassistant.enabled needs a device_id without '.' (got {self.device_id!r}): it is "
                             "the Home Assistant node id, which allows only letters, digits, '_' and '-'")
        return self

    @model_validator(mode="after")
    def _replay_needs_source(self) -> "AgentConfig":
        if self.camera.backend == "replay" and not self.camera.source:
            raise ValueError("camera.source is required when camera.backend is 'replay'")
        return self

    @model_validator(mode="after")
    def _multi_camera_matches_panorama(self) -> "AgentConfig":
        if self.camera.backend != "multi":
            return self
        if not (self.panorama.enabled and self.panorama.kind == "multi"):
            raise ValueError("camera.backend 'multi' needs [panorama] enabled = true and kind = 'multi'")
        names = sorted(source.name for source in self.camera.sources)
        views = sorted(view.name for view in self.panorama.cameras)
        if names != views:
            raise ValueError(f"camera.sources names {names} must match panorama.cameras names {views}")
        return self

    @model_validator(mode="after")
    def _inputs_and_outputs_agree(self) -> "AgentConfig":
        pir_zones = {line.id: line.zone for line in self.gpio.inputs if line.kind == "pir"}
        problems = zone_problems(self.fusion, pir_zones) + signalling_problems(self.signalling, self.gpio)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _transport_allowed(self) -> "AgentConfig":
        found = insecure_transport(self.broker)
        if found and not self.security.allow_insecure_transport:
            raise ValueError("security.allow_insecure_transport is false, but " +
                             "; ".join(f"{key}: {why}" for key, why in found))
        return self

    @property
    def topic_root(self) -> str:
        return self.broker.topic_root.format(device_id=self.device_id).rstrip("/")


ENV_PREFIX = "PID_AGENT_"


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """Config keys set in the environment, as dotted key -> variable name.

    `PID_AGENT_<SECTION>__<KEY>` sets `section.key` (`PID_AGENT_BROKER__URL`, `PID_AGENT_BROKER__TLS__CA_FILE`),
    `PID_AGENT_<KEY>` a top-level key (`PID_AGENT_DATA_DIR`). Names are case-insensitive.
    """
    return {name[len(ENV_PREFIX):].lower().replace("__", "."): name
            for name in sorted(environ) if name.upper().startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX)}


def _env_value(raw: str):
    """A variable's text; inline TOML for arrays and tables (`[...]`, `{...}`). Scalars stay text: pydantic
    converts "30" or "true" exactly as it would the same key's text, so validation is the file's."""
    if raw.strip()[:1] in ("[", "{"):
        try:
            return tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            return raw  # refused by the key's type below, naming the variable
    return raw


def set_key(data: dict, dotted: str, value) -> None:
    """Set `section.key` in a config mapping, creating the sections on the way."""
    *sections, key = dotted.split(".")
    for section in sections:
        if not isinstance(data.get(section), dict):
            data[section] = {}  # not a table here: the key's type check below names the override
        data = data[section]
    data[key] = value


def _name_sources(lines: list[str], sources: dict[str, str]) -> list[str]:
    """Error lines about a key set by an override name where it came from (`broker.url (PID_AGENT_BROKER__URL)`)."""
    named = []
    for line in lines:
        key = line.split(":", 1)[0]
        origin = next((name for dotted, name in sources.items()
                       if key == dotted or key.startswith(dotted + ".") or dotted.startswith(key + ".")), None)
        named.append(f"{key} (from {origin}):{line.split(':', 1)[1]}" if origin else line)
    return named


def parse_config(data: dict, origin: str = "<config>", sources: dict[str, str] | None = None) -> AgentConfig:
    """Validate a config mapping; raise ConfigError naming every bad key (and the override that set it)."""
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        lines = "\n  ".join(_name_sources(describe_errors(exc), sources or {}))
        raise ConfigError(f"invalid config {origin}:\n  {lines}") from None


def read_config_file(path: str | Path | None) -> dict:
    """The TOML file's mapping; None gives an empty one (the built-in defaults)."""
    if path is None:
        return {}
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load_config(path: str | Path | None, overrides: dict[str, object] | None = None,
                environ: Mapping[str, str] | None = None) -> AgentConfig:
    """The file (None: built-in defaults), then PID_AGENT_* variables, then command-line overrides
    ({"broker.url": ..., from "--broker"}), validated together."""
    data = read_config_file(path)
    environ = os.environ if environ is None else environ
    sources: dict[str, str] = {}
    for dotted, name in env_overrides(environ).items():
        set_key(data, dotted, _env_value(environ[name]))
        sources[dotted] = name
    for dotted, (value, option) in (overrides or {}).items():
        set_key(data, dotted, value)
        sources[dotted] = option
    origin = str(path) if path is not None else "(defaults)"
    if sources:
        origin += " with " + ", ".join(sorted(set(sources.values())))
    return parse_config(data, origin=origin, sources=sources)
