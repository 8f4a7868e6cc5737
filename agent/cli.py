"""Command line: `pid-agent run|replay|check-config|monitor|command|keys|eval|make-demo|commission|verify|arc-test`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from pathlib import Path

from agent import __version__
from agent.arc import cli as arc_cli
from agent.config import AgentConfig, load_config, parse_config
from agent.logsetup import setup_logging
from common.clock import SystemClock
from common.errors import AgentError, ConfigError
from station import loan_report
from station import verify as verify_cli

log = logging.getLogger("pid-agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pid-agent", description="Edge agent of a loaned intrusion-detection unit.")
    parser.add_argument("--version", action="version", version=f"pid-agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the unit from its config (live camera or configured source)")
    run.add_argument("--config", required=True, type=Path, help="TOML config file")

    replay = commands.add_parser("replay", help="run the same pipeline on a recording")
    replay.add_argument("source", help="video file, image folder or glob of images")
    replay.add_argument("--config", type=Path, help="TOML config file (defaults if omitted)")
    replay.add_argument("--fast", action="store_true", help="as fast as possible; time = frame index / fps")
    replay.add_argument("--fps", type=float, help="frame rate of an image sequence (default: config camera.fps)")
    replay.add_argument("--events", type=Path, help="write one JSON line per event to this file")
    replay.add_argument("--offline", action="store_true", help="do not contact the broker; everything stays spooled")

    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file", type=Path)

    monitor = commands.add_parser("monitor", help="receive a unit's status, heartbeats, events and media")
    monitor.add_argument("--broker", required=True, help="mqtt://host:port")
    monitor.add_argument("--device", help="one unit's device id (default: all units)")
    monitor.add_argument("--out", type=Path, help="save reassembled, verified media here")
    monitor.add_argument("--clean-session", action="store_true",
                         help="start a fresh broker session (default: a persistent one that gets what was "
                              "published while the monitor was away)")

    command = commands.add_parser("command", help="send a command to a unit and print its answer")
    command.add_argument("--broker", required=True, help="mqtt://host:port")
    command.add_argument("--device", required=True, help="the unit's device id")
    command.add_argument("json", help='the command, e.g. \'{"cmd": "disarm"}\' or '
                                      '\'{"cmd": "set_mode", "mode": "covert"}\'')
    command.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer")
    command.add_argument("--key", type=Path, help="station key file to sign with (`pid-agent keys new`); "
                                                  "a unit refuses unsigned commands")

    keys = commands.add_parser("keys", help="make, show and export station signing keys")
    keys.add_argument("action", choices=("new", "show", "export"),
                      help="new: write a key file (0600); show: its id and public key; export: config lines "
                           "for a unit's [commands] station_keys")
    keys.add_argument("file", type=Path, help="the station key file")
    keys.add_argument("--id", default="station-1", help="new: the key id units will know it by")

    evaluate = commands.add_parser("eval", help="score detection on a manifest of recordings")
    evaluate.add_argument("manifest", type=Path)
    evaluate.add_argument("--config", type=Path)
    evaluate.add_argument("--clip", action="append", dest="clips", help="only this clip id (repeatable)")
    evaluate.add_argument("--json", type=Path, help="write the report as JSON")
    evaluate.add_argument("--plot", type=Path, help="write one PNG per clip into this folder")

    commission = commands.add_parser("commission", help="serve the installer's page on a replay or synthetic camera")
    commission.add_argument("--config", required=True, type=Path, help="the unit's TOML config (zones are saved here)")
    commission.add_argument("--source", help="recording to replay in a loop (default: the config's, or synthetic)")
    selftest = commands.add_parser("selftest", help="check camera, detection, GPIO, broker, clock and storage; "
                                                    "a pass/fail table, exit 6 when a part fails")
    selftest.add_argument("--config", type=Path, help="TOML config file (defaults if omitted)")
    selftest.add_argument("--siren", action="store_true", help="also sound the siren outputs (briefly)")

    demo = commands.add_parser("make-demo", help="render the bundled demo recording (a figure crossing a yard)")
    demo.add_argument("out", type=Path, help="MP4 file to write")
    demo.add_argument("--seconds", type=float, default=30.0)
    arc_cli.add_parser(commands)
    verify_cli.add_parser(commands)
    loan_report.add_parser(commands)
    return parser


def cmd_check_config(args) -> int:
    config = load_config(args.file)
    print(f"{args.file}: OK (device {config.device_id}, camera {config.camera.backend}, broker {config.broker.url})")
    return 0


def _progress(total: int | None):
    """A progress bar on a terminal, nothing when output is redirected."""
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", disable=not sys.stderr.isatty(), file=sys.stderr)


def _run_agent(config: AgentConfig, *, upload: bool, events_path: Path | None, show_progress: bool) -> int:
    from agent.pipeline import Agent
    from drivers.camera import open_camera

    camera = open_camera(config, SystemClock())  # stateless: the same clock as the Agent's below
    with contextlib.ExitStack() as stack:
        events_out = stack.enter_context(_open_events(events_path)) if events_path else None
        bar = stack.enter_context(_progress(None)) if show_progress else None

        def advance(frame) -> None:
            if bar.total is None and camera.frame_count:
                bar.total = camera.frame_count  # known once the recording is open
            bar.update(1)

        agent = Agent(config, camera, SystemClock(), upload=upload, events_out=events_out,
                      on_frame=advance if bar is not None else None)
        _stop_on_signals(agent)
        summary = agent.run()
    print(f"frames: {summary.frames}, alarms: {summary.alarms}, events: {len(summary.events_published)}")
    if summary.outbox_depth:
        print(f"{summary.outbox_depth} messages wait in the outbox at {summary.outbox_path} "
              f"(broker {config.broker.url} {'unreachable' if upload else 'not contacted'}); "
              "they are sent when the agent next connects")
    else:
        print(f"everything delivered to {config.broker.url}")
    return 0


def _open_events(path: Path):
    try:
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--events: cannot write {path}: {exc.strerror or exc}") from None


def _stop_on_signals(agent) -> None:
    def request_stop(signum, _frame):
        log.info("signal %s: stopping (send it again to exit at once)", signal.Signals(signum).name)
        agent.stop()
        signal.signal(signum, signal.SIG_DFL)  # a second signal is not ignored if the camera blocks

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def cmd_run(args) -> int:
    config = load_config(args.config)
    return _run_agent(config, upload=True, events_path=None, show_progress=False)


def cmd_replay(args) -> int:
    config = load_config(args.config)
    data = config.model_dump()
    data["camera"].update(backend="replay", source=args.source, realtime=not args.fast)
    if args.fps is not None:
        data["camera"]["fps"] = args.fps
    config = parse_config(data, origin="(config with replay options)")  # --fps is validated like camera.fps
    return _run_agent(config, upload=not args.offline, events_path=args.events, show_progress=True)


def cmd_monitor(args) -> int:
    from station.monitor import run_monitor

    return run_monitor(args.broker, args.device, args.out, clean_session=args.clean_session)


def cmd_command(args) -> int:
    from station.command import send_command

    result = send_command(args.broker, args.device, args.json, args.timeout, key_file=args.key)
    if result is None:
        print(f"no answer from {args.device} within {args.timeout:.0f} s; commands are not queued for a unit "
              "that is offline: send it again once its status is online")
        return 1
    print(result)
    return 0 if result.get("ok") else 1


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


def cmd_eval(args) -> int:
    from evaluation import evaluate

    config = load_config(args.config)
    report = evaluate.evaluate(args.manifest, config, args.clips)
    print(evaluate.format_table(report))
    if args.json:
        evaluate.write_json(report, args.json)
    if args.plot:
        evaluate.write_plots(report, args.plot)
    return 0


def cmd_make_demo(args) -> int:
    from evaluation.demo import write_demo

    frames = write_demo(args.out, seconds=args.seconds)
    print(f"wrote {args.out} ({frames} frames)")
    return 0


def cmd_commission(args) -> int:
    from web.commission import run_commission

    return run_commission(args.config, args.source)


def cmd_selftest(args) -> int:
    from agent.selftest import exit_code, format_table, run_selftest

    checks = run_selftest(load_config(args.config), SystemClock(), siren=args.siren)
    print(format_table(checks))
    return exit_code(checks)


COMMANDS = {"run": cmd_run, "replay": cmd_replay, "check-config": cmd_check_config, "monitor": cmd_monitor,
            "eval": cmd_eval, "command": cmd_command, "keys": cmd_keys, "make-demo": cmd_make_demo,
            "commission": cmd_commission, "selftest": cmd_selftest}
COMMANDS["arc-test"] = arc_cli.cmd_arc_test
COMMANDS["verify"] = verify_cli.cmd_verify
COMMANDS["loan-report"] = loan_report.cmd_loan_report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)  # journald priorities under systemd, timestamped stderr otherwise
    try:
        return COMMANDS[args.command](args)
    except AgentError as exc:
        print(f"pid-agent: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
