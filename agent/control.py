"""Control: remote commands and the armed schedule → the unit's armed state and signalling mode, in one place.

Commands arrive on the network thread and wait in a queue; they are applied between frames (or by the supervisor
while the camera is down), so the frame loop never sees its state change under it. Only signed commands from a
configured station key are applied (agent/commands.py Gate); refusals are answered and logged at a bounded rate.
What a command set (armed, mode) is kept in data_dir and restored at start-up; the schedule's first report after
start, or a change it reports in the same step as a command, does not undo the command: its next transition does.
"""

from __future__ import annotations

import logging
import queue
from pathlib import Path
from typing import assert_never

from agent.analyzer import Analyzer
from agent.commands import (
    Arm,
    Command,
    CommandError,
    Disarm,
    ExtendLoan,
    Gate,
    Hold,
    Received,
    Release,
    SetMode,
    Silence,
    StartLoan,
    Verdict,
)
from agent.loan import LoanBook, LoanNotice
from agent.moment import Moment
from agent.reactions import Reactions
from agent.schedule import Schedule
from agent.security import CommandSettings
from agent.security_parse import excerpt
from agent.signalling import Signaller
from agent.storage.nonces import CommandStore
from agent.uplink.messages import CommandResult, Identity
from agent.uplink.publisher import Publisher
from common.clock import Clock, iso_utc
from common.errors import AgentError

log = logging.getLogger(__name__)

REFUSAL_WINDOW_S = 60.0


class RefusalLimit:
    """At most `per_window` refusals answered and logged per minute; the rest are counted and summed up once."""

    def __init__(self, per_window: int) -> None:
        self.per_window = per_window
        self._window_start: float | None = None
        self._count = 0
        self.suppressed = 0

    def allow(self, now: float) -> bool:
        if self._window_start is None or now - self._window_start >= REFUSAL_WINDOW_S:
            if self.suppressed:
                log.warning("%d more command refusal(s) in the last minute were not answered or logged",
                            self.suppressed)
            self._window_start, self._count, self.suppressed = now, 0, 0
        self._count += 1
        if self._count > self.per_window:
            self.suppressed += 1
            return False
        return True


class Control:
    def __init__(self, identity: Identity, armed_by_config: bool, schedule: Schedule, analyzer: Analyzer,
                 signaller: Signaller, reactions: Reactions, publisher: Publisher, clock: Clock,
                 commands: queue.SimpleQueue[Received], settings: CommandSettings, data_dir: Path,
                 loan: LoanBook | None = None) -> None:
        self.loan = loan
        self.identity = identity
        self.armed_by_config = armed_by_config  # a config that disarms the unit wins over the schedule
        self.schedule = schedule
        self.analyzer = analyzer
        self.signaller = signaller
        self.reactions = reactions
        self.publisher = publisher
        self.clock = clock
        self._commands = commands  # messages put there by the network thread, applied at the next step
        self.store = CommandStore(data_dir)
        self.gate = Gate(settings, identity.device_id, self.store)
        self.refusals = RefusalLimit(settings.refusals_per_min)
        self._commanded_this_step = False
        self._schedule_reported = False
        self._restored = self._restored_state()
        if not self.gate.open:
            log.warning("no station key configured ([commands] station_keys): this unit accepts no command")

    def step(self, moment: Moment) -> None:
        """Between frames: the restored state (once), queued commands, the schedule, then the loan."""
        self._restore(moment)
        self._commanded_this_step = False
        self.apply_commands(moment)
        self.follow_schedule(moment)
        self.follow_loan(moment)

    def follow_loan(self, moment: Moment) -> None:
        """The loan's notices go out as they fall due; an ended loan with at_end = "stop" disarms the unit."""
        if self.loan is None:
            return
        for notice in self.loan.check(moment.wall):
            self._loan_changed(notice, moment)
            if notice.state == "ended" and self.loan.alarms_stopped(moment.wall) and self.analyzer.engine.armed:
                self._set_armed(False, moment, "loan")

    def _loan_changed(self, notice: LoanNotice, moment: Moment) -> None:
        self.reactions.loan(notice, self.loan.settings.at_end, moment)
        self.reactions.notary.record("loan", {"state": notice.state, **self.loan.describe()})

    def apply_commands(self, moment: Moment) -> None:
        self._restore(moment)
        while True:
            try:
                received = self._commands.get_nowait()
            except queue.Empty:
                return
            result = self._answer(received, moment)
            if result is not None:
                self.publisher.command_result(result)

    def follow_schedule(self, moment: Moment) -> None:
        armed = self.schedule.change(moment.wall)
        if armed is None:
            return
        first, self._schedule_reported = not self._schedule_reported, True
        if self._commanded_this_step or (first and self.store.get("armed") is not None):
            return  # a command's state stands until the schedule's next real transition
        armed = armed and self.armed_by_config and not self._loan_stopped(moment)
        self.store.put("armed", None)  # the schedule rules again, also after a restart
        if armed != self.analyzer.engine.armed:
            self._set_armed(armed, moment, "schedule")

    def _answer(self, received: Received, moment: Moment) -> CommandResult | None:
        """The result to publish, or None for a refusal over the rate limit (counted, summed up later)."""
        head = {**self.identity.model_dump(), "ts": iso_utc(self.clock.wall())}
        try:
            command = self.gate.admit(received, self.clock.wall())
            detail = self._execute(command, moment)
            return CommandResult(**head, id=command.id, cmd=command.cmd, ok=True, detail=detail)
        except AgentError as exc:  # a refused command, or one that could not be carried out
            reason = excerpt(exc, 200)
        except Exception as exc:  # noqa: BLE001 - nothing on the wire may stop the unit
            log.exception("command handling failed")
            reason = excerpt(f"internal error: {type(exc).__name__}", 200)
        if not self.refusals.allow(self.clock.monotonic()):
            return None
        log.warning("command refused: %s", reason)
        return CommandResult(**head, id=self.gate.last_id, ok=False, reason=reason)

    def _restored_state(self) -> dict:
        armed, mode = self.store.get("armed"), self.store.get("mode")
        state = {}
        if armed in ("true", "false"):
            state["armed"] = armed == "true"
        if mode in ("overt", "covert"):
            state["mode"] = mode
        if state:
            log.info("restoring the state set by command before restart: %s", state)
        return state

    def _restore(self, moment: Moment) -> None:
        restored, self._restored = self._restored, {}
        if "armed" in restored and restored["armed"] != self.analyzer.engine.armed:
            self._set_armed(restored["armed"], moment, "command")
        if "mode" in restored:
            self.signaller.set_mode(restored["mode"], moment.ts)

    def _execute(self, command: Command, moment: Moment) -> str:
        match command:
            case Arm() | Disarm():
                armed = isinstance(command, Arm)
                if armed and self._loan_stopped(moment):
                    raise CommandError("the loan has ended and loan.at_end is 'stop': extend it before arming")
                self._set_armed(armed, moment, "command")
                self._commanded_this_step = True
                self.store.put("armed", "true" if armed else "false")
                return "armed" if armed else "disarmed"
            case SetMode():
                self.signaller.set_mode(command.mode, moment.ts)
                self.store.put("mode", command.mode)
                return f"mode {command.mode}"
            case Silence():
                self.signaller.silence(moment.ts)
                return "outputs silenced"
            case StartLoan():
                return self._start_loan(command, moment)
            case ExtendLoan():
                return self._extend_loan(command, moment)
            case Verdict():
                self.reactions.notary.record("verdict", command.model_dump(exclude={"cmd"}))
                return "verdict recorded"
            case Hold():
                held = self.reactions.outbox.hold(command.event_id, command.reference)
                self.reactions.notary.record("hold", command.model_dump(exclude={"cmd"}))
                return f"media of {command.event_id} on hold ({command.reference})" if held else \
                    f"media of {command.event_id} already on hold"
            case Release():
                if not self.reactions.outbox.release(command.event_id):
                    raise CommandError(f"{command.event_id} is not on hold")
                self.reactions.notary.record("release", command.model_dump(exclude={"cmd"}))
                return f"hold on {command.event_id} released"
            case _:
                assert_never(command)

    def _loan_stopped(self, moment: Moment) -> bool:
        return self.loan is not None and self.loan.alarms_stopped(moment.wall)

    def _start_loan(self, command: StartLoan, moment: Moment) -> str:
        if self.loan is None:
            raise CommandError("this unit keeps no loan book")
        notice = self.loan.start(moment.wall, command.reference)
        if notice is None:
            raise CommandError(f"the loan already started on {iso_utc(self.loan.started)}")
        self._loan_changed(notice, moment)
        return f"loan started ({command.reference}); ends {iso_utc(notice.end_wall)}"

    def _extend_loan(self, command: ExtendLoan, moment: Moment) -> str:
        if self.loan is None:
            raise CommandError("this unit keeps no loan book")
        if not command.days and not command.paid_until:
            raise CommandError("an extension needs days or paid_until")
        notice = self.loan.extend(command.days, command.paid_until, command.reference, moment.wall)
        self._loan_changed(notice, moment)
        return f"loan extended ({command.reference}); ends {iso_utc(notice.end_wall)}"

    def _set_armed(self, armed: bool, moment: Moment, source: str) -> None:
        """Arm or disarm (ending an active alarm and silencing outputs), and say so upstream."""
        for event in self.analyzer.set_armed(armed, moment.ts, moment.frame):
            self.reactions.handle(event, moment)
        if not armed:
            self.signaller.silence(moment.ts)
        self.reactions.armed(armed, source, moment)
