"""Command line of the unit's runtime: run, replay, check-config, selftest, commission, decommission, arc-test, and
eval / make-demo (the detection evaluation and the demo recording `make run` replays; evaluation/ is imported only
by them). The station tools are `pid-station` (station/cli.py); their old names here say so and exit 64.

Dependencies point down: nothing here imports station/ or evaluation/ at module level, and web/ (the commissioning
page) only inside the functions that serve it (tests/test_layering.py)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import signal
import sys
from pathlib import Path

from agent import __version__
from agent.arc import cli as arc_cli
from agent.config import AgentConfig, load_config
from agent.logsetup import setup_logging
from common.clock import SystemClock
from common.errors import AgentError, ConfigError

log = logging.getLogger("pid-agent")

# Exit codes (README "Exit codes"); AgentError subclasses carry theirs: config 2, source 3, storage 4, hardware 5.
EXIT_OK = 0
EXIT_FAILED = 1        # the unit refused a command; an unexpected OS error
EXIT_USAGE = 64        # bad command line (sysexits EX_USAGE), apart from config errors (2)
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with the usage exit code of its own, so scripts tell a typo from a bad config."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_overrides(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--broker", metavar="URL", help="broker address, overrides broker.url (mqtt://host:port)")
    sub.add_argument("--data-dir", type=Path, metavar="DIR", help="outbox and media folder, overrides data_dir")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pid-agent", description="Edge agent of a loaned intrusion-detection unit "
                                                   "(the station tools are `pid-station`).")
    parser.add_argument("--version", action="version", version=f"pid-agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the unit from its config (live camera or configured source)")
    run.add_argument("--config", required=True, type=Path, help="TOML config file")
    _add_overrides(run)

    replay = commands.add_parser("replay", help="run the same pipeline on a recording")
    replay.add_argument("source", help="video file, image folder or glob of images")
    replay.add_argument("--config", type=Path, help="TOML config file (defaults if omitted)")
    replay.add_argument("--fast", action="store_true", help="as fast as possible; time = frame index / fps")
    replay.add_argument("--fps", type=float, help="frame rate of an image sequence (default: config camera.fps)")
    replay.add_argument("--events", type=Path, help="write one JSON line per event to this file")
    replay.add_argument("--offline", action="store_true", help="do not contact the broker; everything stays spooled")
    _add_overrides(replay)

    check = commands.add_parser("check-config", help="check a config and this machine as `run` would (files it "
                                                     "reads, data_dir it writes) and exit")
    check.add_argument("file", type=Path)
    check.add_argument("--schema-only", action="store_true",
                       help="only the keys and values, not this machine's files (a config made for another unit)")

    evaluate = commands.add_parser("eval", help="score detection on a manifest of recordings")
    evaluate.add_argument("manifest", type=Path, nargs="+", help="clips.json manifest(s)")
    evaluate.add_argument("--config", type=Path)
    evaluate.add_argument("--clip", action="append", dest="clips", help="only this clip id (repeatable)")
    evaluate.add_argument("--json", type=Path, help="write the report as JSON (one manifest)")
    evaluate.add_argument("--plot", type=Path, help="write one PNG per clip and a summary into this folder")
    evaluate.add_argument("--sweep", action="store_true",
                          help="robustness sweep: the evaluation of all manifests with each main parameter "
                               "scaled by 0.7 and 1.3 (one full evaluation per row: CPU heavy)")
    evaluate.add_argument("--param", action="append", dest="params", metavar="SECTION.NAME",
                          help="with --sweep: only this parameter (repeatable)")
    evaluate.add_argument("--jobs", type=int, default=1, help="with --sweep: rows evaluated in parallel")

    commission = commands.add_parser("commission", help="serve the installer's page on a replay or synthetic camera")
    commission.add_argument("--config", required=True, type=Path, help="the unit's TOML config (zones are saved here)")
    commission.add_argument("--source", help="recording to replay in a loop (default: the config's, or synthetic)")
    selftest = commands.add_parser("selftest", help="check camera, detection, GPIO, broker, clock and storage; "
                                                    "a pass/fail table, exit 7 when a part fails")
    selftest.add_argument("--config", type=Path, help="TOML config file (defaults if omitted)")
    selftest.add_argument("--siren", action="store_true", help="also sound the siren outputs (briefly)")

    decommission = commands.add_parser(
        "decommission", help="a unit back from site: last audit entry, final report, outbox delivered or exported, "
                             "then site data, media and keys wiped")
    decommission.add_argument("--config", required=True, type=Path, help="the unit's TOML config")
    decommission.add_argument("--report", required=True, type=Path, metavar="DIR",
                              help="folder for the final report, the audit log's copy and the unit's public key")
    decommission.add_argument("--export", type=Path, metavar="DIR",
                              help="keep what the outbox still holds here (messages and media with manifests)")
    decommission.add_argument("--drain-timeout", type=float, default=60.0, metavar="S",
                              help="seconds to deliver the outbox to the broker first (default 60; 0: do not try)")
    decommission.add_argument("--offline", action="store_true", help="do not contact the broker")
    decommission.add_argument("--yes", action="store_true", help="really wipe (without it nothing is done)")

    demo = commands.add_parser("make-demo", help="render the bundled demo recording (a figure crossing a yard)")
    demo.add_argument("out", type=Path, help="MP4 file to write")
    demo.add_argument("--seconds", type=float, default=30.0)
    arc_cli.add_parser(commands)
    return parser


def cmd_check_config(args) -> int:
    from agent.preflight import preflight

    config = load_config(args.file)
    findings = [] if args.schema_only else preflight(config, args.file)
    for finding in findings:
        print(f"pid-agent: {'error' if finding.problem else 'warning'}: {finding}", file=sys.stderr)
    problems = [finding for finding in findings if finding.problem]
    if problems:
        print(f"{args.file}: {len(problems)} problem(s) for `run` on this machine", file=sys.stderr)
        return ConfigError.exit_code
    checked = "keys and values only" if args.schema_only else "files and data_dir checked"
    print(f"{args.file}: OK (device {config.device_id}, camera {config.camera.backend}, broker {config.broker.url}; "
          f"{checked})")
    return 0


def _progress(stack: contextlib.ExitStack):
    """A progress bar on a terminal (log lines printed above it, not through it); None when output is redirected."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar = stack.enter_context(tqdm(total=None, unit="frame", file=sys.stderr, dynamic_ncols=True))
    stack.enter_context(logging_redirect_tqdm(tqdm_class=tqdm))
    return bar


def _configured(args, replay: dict | None = None) -> AgentConfig:
    """The config file, then PID_AGENT_* variables, then this command line's options, validated together."""
    overrides: dict[str, tuple[object, str]] = dict(replay or {})
    if args.broker is not None:
        overrides["broker.url"] = (args.broker, "--broker")
    if args.data_dir is not None:
        overrides["data_dir"] = (str(args.data_dir), "--data-dir")
    return load_config(args.config, overrides)


def _run_agent(config: AgentConfig, *, upload: bool, events_path: Path | None, show_progress: bool,
               config_path: Path | None = None) -> int:
    from agent.pipeline import Agent
    from agent.preflight import tighten
    from drivers.camera import open_camera

    os.umask(0o077)  # what the agent writes (outbox, media, audit log, keys) is its user's alone: 0600 / 0700
    tightened = tighten(config.data_dir)
    if tightened:
        log.warning("data_dir %s: %d file(s) or folder(s) were open to others; now 0600/0700", config.data_dir,
                    tightened)
    camera = open_camera(config, SystemClock())  # stateless: the same clock as the Agent's below
    with contextlib.ExitStack() as stack:
        events_out = stack.enter_context(_open_events(events_path)) if events_path else None
        bar = _progress(stack) if show_progress else None

        def advance(frame) -> None:
            if bar.total is None and camera.frame_count:
                bar.total = camera.frame_count  # known once the recording is open
            if frame.index % 10 == 0:  # the postfix reads the outbox: not on every frame
                bar.set_postfix(alarms=agent.summary.alarms, outbox=agent.outbox.depth(), refresh=False)
            bar.update(1)

        agent = Agent(config, camera, SystemClock(), upload=upload, events_out=events_out,
                      on_frame=advance if bar is not None else None)
        _stop_on_signals(agent)
        if config_path is not None and config.commissioning.enabled:  # the installer's page beside the unit
            from web.commission import serving

            stack.enter_context(serving(agent, config, config_path))
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
    return _run_agent(_configured(args), upload=True, events_path=None, show_progress=False, config_path=args.config)


def cmd_replay(args) -> int:
    replay = {"camera.backend": ("replay", "replay"), "camera.source": (args.source, "SOURCE"),
              "camera.realtime": (not args.fast, "--fast")}
    if args.fps is not None:
        replay["camera.fps"] = (args.fps, "--fps")  # validated like camera.fps, and named as --fps
    return _run_agent(_configured(args, replay), upload=not args.offline, events_path=args.events,
                      show_progress=True)


def cmd_eval(args) -> int:
    from evaluation import evaluate

    if args.plot and not _importable("matplotlib"):  # said before a long evaluation, not after it
        print("pid-agent: error: --plot needs matplotlib, which is not installed here "
              "(pip install matplotlib, or run without --plot)", file=sys.stderr)
        return EXIT_FAILED
    config = load_config(args.config)
    if args.sweep:
        return _eval_sweep(args, config)
    if len(args.manifest) > 1 and (args.json or args.plot):
        print("pid-agent: error: --json and --plot take one manifest at a time", file=sys.stderr)
        return EXIT_USAGE
    for manifest in args.manifest:
        clips = args.clips if len(args.manifest) == 1 else _clips_in(manifest, args.clips, args.manifest)
        if clips == []:
            continue  # none of the chosen clips is in this manifest
        report = evaluate.evaluate(manifest, config, clips)
        print(evaluate.format_table(report))
    if args.json:
        evaluate.write_json(report, args.json)
    if args.plot:
        evaluate.write_plots(report, args.plot, config.detection)
    return 0


def _clips_in(manifest: Path, clips: list[str] | None, manifests: list[Path]) -> list[str] | None:
    """The --clip ids that belong to `manifest`, one of several; an id in none of them is refused."""
    from evaluation.evaluate import load_manifest

    if clips is None:
        return None
    known = {path: {clip.id for clip in load_manifest(path).clips} for path in manifests}
    unknown = [clip for clip in clips if not any(clip in ids for ids in known.values())]
    if unknown:
        raise ConfigError(f"unknown clip id(s) {', '.join(unknown)} in {', '.join(map(str, manifests))}")
    return [clip for clip in clips if clip in known[manifest]]


def _eval_sweep(args, config) -> int:
    from evaluation import sweep

    rows = sweep.sweep(args.manifest, config, tuple(args.params) if args.params else sweep.MAIN_PARAMETERS,
                       clip_ids=args.clips, jobs=max(1, args.jobs))
    print(sweep.format_sweep(rows))
    return 0 if all(row.passed for row in rows) else EXIT_FAILED


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def cmd_make_demo(args) -> int:
    from evaluation.demo import write_demo

    frames = write_demo(args.out, seconds=args.seconds)
    print(f"wrote {args.out} ({frames} frames)")
    return 0


def cmd_commission(args) -> int:
    from web.commission import run_commission

    return run_commission(args.config, args.source)


def cmd_selftest(args) -> int:
    from agent.selftest import exit_code, format_table, report_upstream, run_selftest, service_running

    config, clock = load_config(args.config), SystemClock()
    checks = run_selftest(config, clock, siren=args.siren)
    print(format_table(checks))
    print(report_upstream(config, clock, checks, send=not service_running()))
    return exit_code(checks)


def cmd_decommission(args) -> int:
    from agent.decommission import decommission, format_outcome

    config = load_config(args.config)
    outcome = decommission(config, SystemClock(), args.report, yes=args.yes, export_dir=args.export,
                           drain_timeout_s=args.drain_timeout, offline=args.offline)
    print(format_outcome(outcome, config.data_dir))
    print(f"final report in {args.report}; unit {config.device_id} decommissioned: reflash its card before the "
          "next loan")
    return 0


COMMANDS = {"run": cmd_run, "replay": cmd_replay, "check-config": cmd_check_config,
            "eval": cmd_eval, "make-demo": cmd_make_demo,
            "commission": cmd_commission, "selftest": cmd_selftest,
            "decommission": cmd_decommission}
COMMANDS["arc-test"] = arc_cli.cmd_arc_test

# the station tools that were commands here, and their names in `pid-station`
MOVED = {"monitor": "monitor", "command": "command", "keys": "keys", "verify": "verify",
         "loan-report": "loan-report", "report": "deployment-report"}


def moved(argv: list[str]) -> str | None:
    """The pid-station command a station tool's old name here stands for (the first word not an option)."""
    words = [word for word in argv if not word.startswith("-")]
    return MOVED.get(words[0]) if words else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if (station := moved(argv)) is not None:  # an engineer's habit: said, not run, and a usage error for scripts
        print(f"pid-agent: moved: use pid-station {station}", file=sys.stderr)
        return EXIT_USAGE
    return dispatch("pid-agent", COMMANDS, build_parser().parse_args(argv))


def dispatch(prog: str, commands: dict, args) -> int:
    """Run the chosen command; our errors and the OS's end it with their exit code and one line in words (shared
    by pid-agent and pid-station)."""
    setup_logging(args.verbose)  # journald priorities under systemd, timestamped stderr otherwise
    try:
        return commands[args.command](args)
    except AgentError as exc:
        print(f"{prog}: error: {in_words(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"{prog}: error: {os_error_in_words(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def in_words(message: str) -> str:
    """A message without raw error numbers: `[Errno 2] No such file` -> `No such file`, `[Errno 1094995529]` (an
    FFmpeg code that means nothing to a reader) dropped, the words after it kept."""
    return re.sub(r"\[Errno -?\d+\] ?", "", message)


def os_error_in_words(exc: OSError) -> str:
    """An OSError as a sentence: its strerror (or the errno's name) and the file it concerns."""
    known = exc.errno in errno.errorcode
    words = exc.strerror or (os.strerror(exc.errno) if known else "") or in_words(str(exc))
    return f"{exc.filename}: {words}" if exc.filename else words


if __name__ == "__main__":
    sys.exit(main())
