"""The one place where errors become messages and exit codes."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from upgrader import __version__, charset, commands
from upgrader.cli import help as help_text
from upgrader.cli import logs
from upgrader.commands import early
from upgrader.errors import ExitCode, InputError, UpgraderError
from upgrader.files import append_line

MAX_PROBLEMS = 50  # printed per run
# Error kinds the CLI itself reports (the others are UpgraderError.reference values; README: Error kinds).
USAGE, BUG, INTERRUPTED = "usage", "bug", "interrupted"
log = logging.getLogger(__name__)


def state_dir() -> Path:
    """Where journals, locks and the debug log live (UPGRADER_STATE_DIR overrides)."""
    env = os.environ.get("UPGRADER_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "upgrader"


class Parser(argparse.ArgumentParser):
    """argparse with upgrader's one error format: the usage, then ``error[usage]: upgrader CMD: message``."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        line = f"error[{USAGE}]: {self.prog}: {message}"
        logging.getLogger(logs.RESULT).error(line, extra={"data": {"exit_code": int(ExitCode.USAGE)}})
        self.exit(int(ExitCode.USAGE), line + "\n")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = Parser(
        prog="upgrader",
        description="Upgrade vendor applications on trading hosts: plan, canary, waves, automatic rollback.",
    )
    parser.add_argument("--version", action="version", version=f"upgrader {__version__}")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="journals, locks and debug log (default: $UPGRADER_STATE_DIR or ~/.local/state/upgrader)",
    )
    parser.add_argument("--debug", action="store_true", help="print tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    names = commands.available()
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen in names:
        names = [chosen]  # import only the command being run
    for name in names:
        module = commands.load(name)
        cmd = sub.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            epilog=help_text.epilog(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        logs.add_arguments(cmd)
        help_text.document(cmd)
        cmd.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logs.configure_from_argv(argv)
    refused = _invisible_argument(argv)
    if refused is not None:  # before anything reads, connects or starts an agent with it
        line = f"error[{USAGE}]: upgrader: {refused}"
        logging.getLogger(logs.RESULT).error(line, extra={"data": {"exit_code": int(ExitCode.USAGE)}})
        print(line, file=sys.stderr)
        return int(ExitCode.USAGE)
    started = early.start(argv, state_dir())  # for `rollback`: SSH handshakes overlap the imports and loading below
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    args.state_dir = args.state_dir or state_dir()
    args.early = started  # the command adopts what it validates (commands/live.py pool_for), closes the rest
    code = _run(args)
    logs.finished(args, code)
    return code


def _invisible_argument(argv: Sequence[str]) -> str | None:
    """Why a command-line value is refused, or None: one holding a character a reader cannot see (issue 25 §3).

    Every option's value is checked, by the rule values in files follow (upgrader.charset): --reason
    and --to reach the hosts and the audit trail, --python is the program sudo runs on every host,
    paths and patterns are shown in plans and reports.  Checked here, once, so no option is missed.
    Positional arguments have their own checks (a RUN is a run id, a file must be found and is read
    under the file rule), which say more than this would.
    """
    for number, arg in enumerate(argv, 1):
        option, joined, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if not joined:
            if arg.startswith("-") or number == 1 or not argv[number - 2].startswith("-"):
                continue  # an option's name, or a positional argument
            option = argv[number - 2]
        reason = charset.problem_text(value)
        if reason is not None:
            return f"argument {number} ({option}) {reason}"
    return None


def _run(args: argparse.Namespace) -> int:
    try:
        logs.configure(args)
        log.debug(
            "upgrader %s %s: state directory %s, python %s",
            __version__,
            args.command,
            args.state_dir,
            sys.version.split()[0],
        )
        with logs.quieted(args):
            return int(args.run(args))
    except InputError as exc:
        for problem in exc.problems[:MAX_PROBLEMS]:
            logs.say(args, f"error[{exc.reference}]: {problem}", error=True)
        if len(exc.problems) > MAX_PROBLEMS:  # a damaged file can hold thousands; the first ones locate it
            logs.say(
                args, f"error[{exc.reference}]: … and {len(exc.problems) - MAX_PROBLEMS} more problems", error=True
            )
        return int(exc.exit_code)
    except UpgraderError as exc:
        logs.say(args, f"error[{exc.reference}]: {exc}", error=True)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        logs.say(args, f"error[{INTERRUPTED}]: interrupted", error=True)
        return 130
    except BrokenPipeError:
        return int(ExitCode.OK)
    except Exception as exc:  # an unexpected exception is a bug: short line here, traceback in the log
        log_path = _write_debug_log(args.state_dir)
        logging.getLogger(logs.RESULT).error("internal error", exc_info=True)  # --log-file keeps the traceback
        logs.say(args, f"error[{BUG}]: upgrader: internal error: {type(exc).__name__}: {exc}", error=True)
        print(f"  this is a bug; the traceback is in {log_path}", file=sys.stderr)
        if args.debug:
            traceback.print_exc()
        return int(ExitCode.BUG)


def _write_debug_log(directory: Path) -> Path:
    path = directory / "debug.log"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Appended as the journals are (files.append_line): never through a symlink planted at the name,
        # which would append the traceback (and the command line) to a file of the planter's choosing.
        append_line(
            path,
            f"--- {datetime.now(UTC).isoformat()} upgrader {__version__} argv={sys.argv!r}\n" + traceback.format_exc(),
        )
    except OSError:
        logging.getLogger(__name__).exception("cannot write debug log")
        return Path("<stderr>")
    return path


# Collect reference cycles after 50,000 new container objects instead of CPython's 700 (the later
# generations after 20 and 10 collections of the one before).  Loading a 10,000-host inventory and
# planning it build ~2 million objects that live to the end (nodes, dicts, models), and almost no
# cycles: at the default the collector walked them again and again, 1.45 s of the 3.05 s of CPU
# `upgrader plan` took (bench/results/plan_10k-2026-12-05-cli.md).  Cycles are still collected, in
# gen-0 batches of at most 50,000 objects.
GC_THRESHOLD = (50_000, 20, 10)


def tune_runtime() -> None:
    """Interpreter settings for upgrader's processes (the `upgrader` executable; tests keep the defaults)."""
    # Dozens of threads mostly wait on hosts (SSH handshakes, agents); with the default 5 ms switch
    # interval a thread busy importing or validating kept each of them waiting 5 ms per packet.
    # Measured on 16 lab hosts: rollback median 4.14 s → 3.86 s.
    sys.setswitchinterval(0.0005)
    gc.set_threshold(*GC_THRESHOLD)


def console() -> None:
    """The `upgrader` executable: main(), then leave without tearing the interpreter down.

    Freeing every module and object at exit took ~0.3 s after the work was done (pydantic models,
    paramiko, the host connections): time an operator waits for the prompt in an emergency.  Output
    is flushed and logging shut down first; journals and audit records are already fsync'd.
    """
    tune_runtime()
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass
    logging.shutdown()
    os._exit(code)
