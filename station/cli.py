"""`pid-station`: the station tools, apart from the unit's runtime (`pid-agent`, agent/cli.py).

monitor (receive what units send), command (send a signed command and print the answer), keys (the station's
signing keys), verify (saved media and audit logs, offline), loan-report (from a unit's audit log) and
deployment-report (from the monitor's records). Exit codes as pid-agent's (README "Exit codes").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent import __version__
from agent.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, dispatch
from station import deployment_report, loan_report
from station import verify as verify_cli

EXIT_NO_ANSWER = 6  # `command`: the unit did not answer in time
PROG = "pid-station"


class _Parser(argparse.ArgumentParser):
    """argparse with the usage exit code of its own, so scripts tell a typo from a bad config."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_tls(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--tls-ca", type=Path, metavar="FILE", help="CA bundle of the broker's certificate (mqtts://)")
    sub.add_argument("--tls-cert", type=Path, metavar="FILE", help="this station tool's client certificate "
                                                                    "(a broker with one identity per client)")
    sub.add_argument("--tls-key", type=Path, metavar="FILE", help="the private key of --tls-cert")


def _tls(args):
    from station.monitor import tls_from

    return tls_from(args.tls_ca, args.tls_cert, args.tls_key)


def _add_monitor(commands) -> None:
    monitor = commands.add_parser("monitor", help="receive a unit's status, heartbeats, events and media")
    monitor.add_argument("--broker", required=True, help="mqtt://host:port")
    monitor.add_argument("--device", help="one unit's device id (default: all units)")
    monitor.add_argument("--out", type=Path, help="save reassembled, verified media and the records for "
                                                   f"`{PROG} deployment-report` (events, heartbeats, results) here")
    monitor.add_argument("--json", action="store_true", help="one JSON object a line (kind, device, topic, ...)")
    monitor.add_argument("--clean-session", action="store_true",
                         help="start a fresh broker session (default: a persistent one that gets what was "
                              "published while the monitor was away)")
    monitor.add_argument("--unit-key", help="the unit's public key (base64): verify its events, results, "
                                             "heartbeats and statuses")
    monitor.add_argument("--unit-keys", type=Path, help="file of '<device_id> <public key>' lines to verify with")
    _add_tls(monitor)


def _add_command(commands) -> None:
    command = commands.add_parser("command", help="send a command to a unit and print its answer")
    command.add_argument("--broker", required=True, help="mqtt://host:port")
    command.add_argument("--device", required=True, help="the unit's device id")
    command.add_argument("json", help='the command, e.g. \'{"cmd": "disarm"}\' or '
                                      '\'{"cmd": "set_mode", "mode": "covert"}\'')
    command.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer")
    command.add_argument("--key", type=Path, help=f"station key file to sign with (`{PROG} keys new`); "
                                                  "a unit refuses unsigned commands")
    command.add_argument("--ttl", type=int, default=30, metavar="SECONDS",
                         help="the command's signed expiry (at most the unit's commands.max_ttl_s, 3600): a unit "
                              "that is offline applies it if it returns before then")
    _add_tls(command)


def _add_keys(commands) -> None:
    keys = commands.add_parser("keys", help="make, show and export station signing keys")
    keys.add_argument("action", choices=("new", "show", "export"),
                      help="new: write a key file (0600); show: its id and public key; export: config lines "
                           "for a unit's [commands] station_keys")
    keys.add_argument("file", type=Path, help="the station key file")
    keys.add_argument("--id", default="station-1", help="new: the key id units will know it by")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Station tools for loaned intrusion-detection units (the unit itself "
                                            "runs `pid-agent`).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_monitor(commands)
    _add_command(commands)
    _add_keys(commands)
    verify_cli.add_parser(commands)
    loan_report.add_parser(commands)
    deployment_report.add_parser(commands)
    return parser


def cmd_monitor(args) -> int:
    from station.monitor import run_monitor

    return run_monitor(args.broker, args.device, args.out, clean_session=args.clean_session, as_json=args.json,
                       unit_key=args.unit_key, unit_keys_file=args.unit_keys, tls=_tls(args))


def cmd_command(args) -> int:
    from station.command import send_command

    result = send_command(args.broker, args.device, args.json, args.timeout, key_file=args.key, ttl_s=args.ttl,
                          tls=_tls(args))
    if result is None:
        print(f"{PROG}: no answer from {args.device} within {args.timeout:.0f} s; if the unit has been online "
              f"before, the broker keeps the command in its session and the unit applies it if it returns within "
              f"its {args.ttl} s expiry (--ttl)", file=sys.stderr)
        return EXIT_NO_ANSWER
    print(json.dumps(result, sort_keys=True))  # one JSON object, for scripts (jq) as much as for people
    return EXIT_OK if result.get("ok") else EXIT_FAILED


def cmd_keys(args) -> int:
    from agent.security import load_key_file, new_key_file, public_key_text

    if args.action == "new":
        key_id, key = args.id, new_key_file(args.file, args.id)
        print(f"wrote {args.file} (mode 0600): keep it on the station only")
    else:
        key_id, key = load_key_file(args.file)
    if args.action == "export":
        print(f'[[commands.station_keys]]\nid = "{key_id}"\npublic_key = "{public_key_text(key)}"')
    else:
        print(f"key id {key_id}, public key {public_key_text(key)}")
    return 0


COMMANDS = {"monitor": cmd_monitor, "command": cmd_command, "keys": cmd_keys, "verify": verify_cli.cmd_verify,
            "loan-report": loan_report.cmd_loan_report, "deployment-report": deployment_report.cmd_report}


def main(argv: list[str] | None = None) -> int:
    return dispatch(PROG, COMMANDS, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
