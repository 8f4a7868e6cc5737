"""Control: remote commands and the armed schedule → the unit's armed state and signalling mode, in one place.

Commands arrive on the network thread and wait in a queue; they are applied between frames (or by the supervisor
while the camera is down), so the frame loop never sees its state change under it.
"""

from __future__ import annotations

import logging
import queue
from typing import assert_never

from agent.analyzer import Analyzer
from agent.commands import Arm, Command, Disarm, SetMode, Silence, parse_command, request_id
from agent.moment import Moment
from agent.reactions import Reactions
from agent.schedule import Schedule
from agent.signalling import Signaller
from agent.uplink.messages import CommandResult, Identity
from agent.uplink.publisher import Publisher
from common.clock import Clock, iso_utc
from common.errors import AgentError

log = logging.getLogger(__name__)


class Control:
    def __init__(self, identity: Identity, armed_by_config: bool, schedule: Schedule, analyzer: Analyzer,
                 signaller: Signaller, reactions: Reactions, publisher: Publisher, clock: Clock,
                 commands: queue.SimpleQueue[bytes]) -> None:
        self.identity = identity
        self.armed_by_config = armed_by_config  # a config that disarms the unit wins over the schedule
        self.schedule = schedule
        self.analyzer = analyzer
        self.signaller = signaller
        self.reactions = reactions
        self.publisher = publisher
        self.clock = clock
        self._commands = commands  # payloads put there by the network thread, applied at the next step

    def step(self, moment: Moment) -> None:
        """Between frames: queued commands first, then the schedule."""
        self.apply_commands(moment)
        self.follow_schedule(moment)

    def apply_commands(self, moment: Moment) -> None:
        while True:
            try:
                payload = self._commands.get_nowait()
            except queue.Empty:
                return
            self.publisher.command_result(self._answer(payload, moment))

    def follow_schedule(self, moment: Moment) -> None:
        armed = self.schedule.change(moment.wall)
        if armed is None:
            return
        armed = armed and self.armed_by_config
        if armed != self.analyzer.engine.armed:
            self._set_armed(armed, moment, "schedule")

    def _answer(self, payload: bytes, moment: Moment) -> CommandResult:
        head = {**self.identity.model_dump(), "ts": iso_utc(self.clock.wall())}
        try:
            command = parse_command(payload)
            detail = self._execute(command, moment)
            return CommandResult(**head, id=command.id, cmd=command.cmd, ok=True, detail=detail)
        except AgentError as exc:  # a refused command, or one that could not be carried out
            log.warning("command refused: %s", exc)
            return CommandResult(**head, id=request_id(payload), ok=False, reason=str(exc))

    def _execute(self, command: Command, moment: Moment) -> str:
        match command:
            case Arm() | Disarm():
                armed = isinstance(command, Arm)
                self._set_armed(armed, moment, "command")
                return "armed" if armed else "disarmed"
            case SetMode():
                self.signaller.set_mode(command.mode, moment.ts)
                return f"mode {command.mode}"
            case Silence():
                self.signaller.silence(moment.ts)
                return "outputs silenced"
            case _:
                assert_never(command)

    def _set_armed(self, armed: bool, moment: Moment, source: str) -> None:
        """Arm or disarm (ending an active alarm and silencing outputs), and say so upstream."""
        for event in self.analyzer.set_armed(armed, moment.ts, moment.frame):
            self.reactions.handle(event, moment)
        if not armed:
            self.signaller.silence(moment.ts)
        self.reactions.armed(armed, source, moment)
