"""`pid-agent selftest`: the installer's check on the ladder, one pass/fail line per part of the unit.

Camera (rate and view), detection, GPIO inputs and outputs, broker, clock, disk and outbox, each checked with the
same drivers and settings the agent runs with. A check that cannot tell (no time-sync information on this system)
says "unknown" and does not fail the run; anything that fails makes the exit code SELFTEST_FAILED.

The result then goes upstream as a signed `selftest` event, through the outbox (and into the audit log) like every
event: sent at once when the agent's service is not running (this process then speaks for the unit), else left in
the outbox for the running agent to send, so two clients never share the unit's broker identity.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Callable

from agent.analyzer import Analyzer
from agent.config import AgentConfig
from agent.sensors import AlarmInputs
from agent.storage.outbox import Outbox
from agent.uplink.messages import Identity, SelfTestCheck, SelfTestResult, envelope
from common.clock import Clock
from common.errors import AgentError
from drivers.camera import open_camera
from drivers.camera.base import Frame
from drivers.gpio import make_gpio
from drivers.gpio.base import Gpio
from models.tamper import TamperDetector

SELFTEST_FAILED = 7
CAMERA_SECONDS = 2.0  # frames for this long at the configured rate: enough to measure it and to run detection
MIN_RATE_SHARE = 0.8  # a camera delivering less than this share of camera.fps fails
MIN_FREE_BYTES = 256 << 20
BROKER_TIMEOUT_S = 10.0
TIMEDATECTL_TIMEOUT_S = 5.0  # systemd answers at once; a hung D-Bus must not stall the ladder check
TIME_ERROR = 5  # adjtimex(2) returns this while the kernel clock is not synchronised
SERVICE = "pid-agent.service"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: could not tell (not a failure)
    detail: str


def run_selftest(config: AgentConfig, clock: Clock, *, siren: bool = False,
                 time_sync: Callable[[], tuple[bool | None, str]] | None = None) -> list[Check]:
    """All checks in order; `time_sync` answers "is the host clock synchronised" (default: ask the host)."""
    checks: list[Check] = []
    gpio = make_gpio(config.gpio, clock=clock)
    try:
        gpio.open()
    except AgentError as exc:
        checks.append(Check("gpio", False, str(exc)))
        gpio = None
    checks += _camera_and_detection(config, clock, gpio)
    if gpio is not None:
        checks += _gpio_checks(gpio, clock, siren)
        gpio.close(clock.monotonic())
    checks.append(_broker_check(config))
    checks += [_clock_check(time_sync or clock_synchronised), *_storage_checks(config, clock)]
    return checks


def exit_code(checks: list[Check]) -> int:
    return SELFTEST_FAILED if any(check.ok is False for check in checks) else 0


def format_table(checks: list[Check]) -> str:
    width = max(len(check.name) for check in checks)
    verdict = {True: "PASS", False: "FAIL", None: "????"}
    lines = [f"{check.name:<{width}}  {verdict[check.ok]}  {check.detail}" for check in checks]
    failed = sum(check.ok is False for check in checks)
    return "\n".join([*lines, f"{len(checks) - failed}/{len(checks)} checks passed" + (
        f", {failed} failed" if failed else "")])


# camera and detection ---------------------------------------------------------------------------------------
def _grab(config: AgentConfig, clock: Clock) -> tuple[list[Frame], list[float], float]:
    camera = open_camera(config, clock)
    camera.open()
    try:
        wanted = max(10, round(camera.fps * CAMERA_SECONDS))
        frames, arrivals = [], []
        for frame in camera.frames():
            frames.append(frame)
            arrivals.append(clock.monotonic())
            if len(frames) >= wanted:
                break
        return frames, arrivals, camera.fps
    finally:
        camera.close()


def _camera_and_detection(config: AgentConfig, clock: Clock, gpio: Gpio | None) -> list[Check]:
    try:
        frames, arrivals, fps = _grab(config, clock)
    except AgentError as exc:
        return [Check("camera", False, str(exc))]
    if len(frames) < 2:
        return [Check("camera", False, f"{len(frames)} frames delivered")]
    return [_rate_check(len(frames), arrivals, fps), _view_check(config, frames),
            _detection_check(config, frames, gpio)]


def _rate_check(count: int, arrivals: list[float], fps: float) -> Check:
    elapsed = arrivals[-1] - arrivals[0]
    rate = (count - 1) / elapsed if elapsed > 0 else float("inf")
    shown = "as fast as read" if rate == float("inf") else f"{rate:.1f} fps"
    return Check("camera rate", rate >= MIN_RATE_SHARE * fps, f"{count} frames, {shown} (configured {fps:g})")


def _view_check(config: AgentConfig, frames: list[Frame]) -> Check:
    """Covered (or blinded flat) by the tamper threshold on the view itself; covered or defocused during the test
    by the tamper detector, which compares with the first view."""
    settings = config.detection.tamper
    contrast = min(float(frame.luma.std()) for frame in frames)
    if contrast < settings.flat_std:
        return Check("camera view", False, f"flat view (luma spread {contrast:.1f} < {settings.flat_std:g}): "
                                           "lens covered, sprayed or blinded")
    detector = TamperDetector(settings.model_copy(update={"check_every_s": 0.0}))  # every frame of the test
    verdicts = {detector.update(frame.luma, frame.ts) for frame in frames} - {None}
    if verdicts:
        return Check("camera view", False, f"tamper: {', '.join(sorted(verdicts))} during the test")
    return Check("camera view", True, f"luma spread {contrast:.1f}, no tamper")


def _detection_check(config: AgentConfig, frames: list[Frame], gpio: Gpio | None) -> Check:
    analyzer = Analyzer(config, AlarmInputs(gpio, config.fusion) if gpio is not None else None)
    try:
        boxes = sum(len(analyzer.process(frame).result.boxes) for frame in frames)
    except (AgentError, ValueError) as exc:
        return Check("detection", False, f"detector failed: {exc}")
    faults = analyzer.status().detector_faults
    if faults:
        return Check("detection", False, f"detector faults: {', '.join(faults)}")
    return Check("detection", True, f"{len(frames)} frames analysed, {boxes} boxes")


# GPIO -------------------------------------------------------------------------------------------------------
def _gpio_checks(gpio: Gpio, clock: Clock, siren: bool) -> list[Check]:
    now = clock.monotonic()
    checks = []
    try:
        gpio.poll(now)
        levels = [f"{line.id}={'active' if gpio.is_active(line.id) else 'idle'}" for line in gpio.settings.inputs]
        checks.append(Check("gpio inputs", True, ", ".join(levels) or "none configured"))
    except AgentError as exc:
        checks.append(Check("gpio inputs", False, str(exc)))
    for line in gpio.settings.outputs:
        if line.kind == "siren" and not siren:
            checks.append(Check(f"output {line.id}", None, "siren not sounded (use --siren)"))
            continue
        checks.append(_toggle(gpio, line.id, clock.monotonic))
    return checks


def _toggle(gpio: Gpio, output_id: str, now: Callable[[], float]) -> Check:
    try:
        gpio.set(output_id, True, now())
        went_on = gpio.is_on(output_id)
        gpio.set(output_id, False, now())
        went_off = not gpio.is_on(output_id)
    except AgentError as exc:
        return Check(f"output {output_id}", False, str(exc))
    return Check(f"output {output_id}", went_on and went_off, f"on: {went_on}, off again: {went_off}")


# broker, clock, storage -------------------------------------------------------------------------------------
def _broker_check(config: AgentConfig) -> Check:
    from agent.uplink.client import make_client

    settings = config.broker
    answered, result = threading.Event(), {}

    def on_connect(client, userdata, flags, reason, properties) -> None:
        result["reason"] = reason
        answered.set()

    try:
        client = make_client(settings, client_id=f"pid-agent-{config.device_id}-selftest")
        client.on_connect = on_connect
        client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
    except (AgentError, OSError) as exc:
        return Check("broker", False, f"{settings.url}: {exc}")
    client.loop_start()
    try:
        if not answered.wait(BROKER_TIMEOUT_S):
            return Check("broker", False, f"{settings.url}: no answer within {BROKER_TIMEOUT_S:g} s")
        reason = result["reason"]
        how = "TLS" if settings.use_tls else "plain"
        identity = f" as {settings.username}" if settings.username else ""
        return Check("broker", not reason.is_failure, f"{settings.url} ({how}{identity}): {reason}")
    finally:
        client.disconnect()
        client.loop_stop()


def clock_synchronised() -> tuple[bool | None, str]:
    """systemd's view where it answers, else the kernel's (adjtimex), else unknown. Why timedatectl gave no answer
    is kept in the detail: the installer on the ladder needs it to tell a missing tool from a stuck one."""
    answered, why = _timedatectl()
    if answered is not None:
        return answered
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only (208 bytes on 64-bit)
        state = ctypes.CDLL(libc_name, use_errno=True).adjtimex(timex)
        if state >= 0:
            return state != TIME_ERROR, f"adjtimex: {'not ' if state == TIME_ERROR else ''}synchronised ({why})"
    return None, f"unknown (no adjtimex answer; {why})"


def _timedatectl() -> tuple[tuple[bool, str] | None, str]:
    """(ok, detail) when timedatectl answers yes or no, else None and the reason it did not."""
    try:
        answer = subprocess.run(["timedatectl", "show", "--property=NTPSynchronized", "--value"],
                                capture_output=True, text=True, timeout=TIMEDATECTL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"timedatectl gave no answer within {TIMEDATECTL_TIMEOUT_S:g} s"
    except OSError as exc:
        return None, f"timedatectl could not run: {exc.strerror or exc}"
    value = answer.stdout.strip()
    if answer.returncode == 0 and value in ("yes", "no"):
        return (value == "yes", f"timedatectl: NTPSynchronized={value}"), ""
    said = (answer.stderr.strip() or value or "no output").splitlines()[0][:160]
    return None, f"timedatectl failed (exit {answer.returncode}): {said}"


def _clock_check(time_sync: Callable[[], tuple[bool | None, str]]) -> Check:
    ok, detail = time_sync()
    return Check("clock", ok, detail)


def _storage_checks(config: AgentConfig, clock: Clock) -> list[Check]:
    checks = []
    try:
        outbox = Outbox(config.data_dir, config.outbox.max_bytes, clock)  # opening it writes a probe file
        depth = outbox.depth()
        outbox.close()
        checks.append(Check("outbox", True, f"{config.data_dir} writable, {depth} messages waiting"))
    except AgentError as exc:
        checks.append(Check("outbox", False, str(exc)))
    try:
        free = shutil.disk_usage(config.data_dir).free
    except OSError as exc:
        return [*checks, Check("disk", False, f"{config.data_dir}: {exc.strerror}")]
    checks.append(Check("disk", free >= MIN_FREE_BYTES, f"{free / 2**30:.1f} GiB free (need "
                                                        f"{MIN_FREE_BYTES >> 20} MiB)"))
    return checks


# upstream ---------------------------------------------------------------------------------------------------
def service_running() -> bool:
    """Whether systemd runs the agent's service here (no systemd, or not running it: False)."""
    try:
        return subprocess.run(["systemctl", "is-active", "--quiet", SERVICE], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def deliver_outbox(config: AgentConfig, outbox: Outbox, clock: Clock, timeout_s: float) -> bool:
    """Send what the outbox holds for the broker, as the agent's uplink does; True once nothing is left for it."""
    from agent import __version__
    from agent.uplink.client import Uplink

    uplink = Uplink(config.broker, config.topic_root, config.device_id, outbox, clock, __version__)
    uplink.start()
    try:
        return uplink.wait_drained(timeout_s)
    finally:
        uplink.stop()


def selftest_event(identity: Identity, seq: int, event_id: str, wall: float, checks: list[Check]) -> SelfTestResult:
    return SelfTestResult(**envelope(identity, seq, event_id, wall, None), passed=exit_code(checks) == 0,
                          failed=[check.name for check in checks if check.ok is False],
                          checks=[SelfTestCheck(name=c.name, ok=c.ok, detail=c.detail) for c in checks])


def report_upstream(config: AgentConfig, clock: Clock, checks: list[Check], *, send: bool,
                    timeout_s: float = BROKER_TIMEOUT_S) -> str:
    """The result as a `selftest` event in the outbox, sent now when `send`; returns what became of it."""
    from agent.events import new_event_id
    from agent.evidence.audit import AuditLog
    from agent.evidence.keys import UnitKey
    from agent.evidence.notary import Notary, config_sha256
    from agent.uplink.publisher import Publisher

    identity = Identity(device_id=config.device_id, site_ref=config.site_ref)
    try:
        outbox = Outbox(config.data_dir, config.outbox.max_bytes, clock)
    except AgentError as exc:
        return f"selftest event not queued: {exc}"
    try:
        key = UnitKey.load_or_create(config.data_dir)
        notary = Notary(key, AuditLog(config.data_dir, key, clock), identity,
                        config_sha256(config.model_dump_json()), clock)
        event_id = new_event_id()
        notary.started()  # like every run of the agent: its audit entries open with the key that signs them
        Publisher(outbox, config.broker.chunk_bytes, notary=notary, key=key).event(
            lambda seq: selftest_event(identity, seq, event_id, clock.wall(), checks))
        notary.stopped("selftest done")
        if not send:
            return f"selftest event {event_id} queued in the outbox: the running agent sends it"
        if any(check.name == "broker" and check.ok is False for check in checks):
            return f"selftest event {event_id} queued in the outbox (broker check failed): sent when the agent connects"
        if deliver_outbox(config, outbox, clock, timeout_s):
            return f"selftest event {event_id} delivered to {config.broker.url}"
        return (f"selftest event {event_id} queued in the outbox ({config.broker.url} did not take it within "
                f"{timeout_s:g} s): the agent sends it when it next connects")
    except AgentError as exc:
        return f"selftest event not sent: {exc}"
    finally:
        outbox.close()
