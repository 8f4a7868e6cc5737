"""`pid-agent arc-test`: one RX manual test to the DC-09 receiver and one test email, for the engineer's bench."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from agent.arc.email import EmailLink
from agent.arc.link import Dc09Link
from agent.config import load_config
from agent.storage.outbox import Outbox
from common.clock import SystemClock


def add_parser(commands) -> None:
    test = commands.add_parser("arc-test", help="send a DC-09 manual test (RX) and a test email to the ARC")
    test.add_argument("--config", required=True, type=Path, help="TOML config file")


def cmd_arc_test(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    identity = {"device_id": config.device_id, "site_ref": config.site_ref}
    clock, failed = SystemClock(), False
    # a scratch outbox: the test is not queued, and must not register links on the unit's own outbox
    with tempfile.TemporaryDirectory(prefix="arc-test-") as scratch:
        box = Outbox(Path(scratch), 1 << 20, clock)
        try:
            if config.arc.dc09.enabled:
                dc09 = Dc09Link(config.arc, box, clock, identity)
                answer = dc09.manual_test()
                target = dc09.paths[dc09.active].label
                print(f"DC-09 {target}: " + (f"{answer.kind} ({answer.text})" if answer
                                                   else f"no valid answer ({dc09.last_reason})"))
                failed |= answer is None or answer.kind != "ACK"
            else:
                print("DC-09: not enabled in [arc.dc09]")
            if config.arc.email.enabled:
                result = EmailLink(config.arc, box, clock, identity).send_test()
                print(f"email {config.arc.email.host}:{config.arc.email.port}: {result}")
                failed |= result != "accepted"
            else:
                print("email: not enabled in [arc.email]")
        finally:
            box.close()
    return 1 if failed else 0
