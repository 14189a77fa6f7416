"""``ms-suite`` entry point: sub-commands, one-line errors with exit code 2, ``--debug`` tracebacks."""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from typing import Iterator, List, Optional

from ms_suite.version import __version__
from ms_suite.engine.interrupt import hold_stop_signals, release_stop_signals
from ms_suite.errors import UserError, first_line

TRAINING_COMMANDS = ("train", "tune", "compress")
COMMAND_MODULES = ["ms_suite.cli.zoo", "ms_suite.cli.run", "ms_suite.cli.tune", "ms_suite.cli.insight",
                   "ms_suite.cli.prepare_data", "ms_suite.cli.compress", "ms_suite.cli.launch",
                   "ms_suite.cli.compare"]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="ms-suite", description="Train, compress, profile and deploy "
                                     "MindSpore models from YAML recipes.")
    parser.add_argument("--version", action="version", version=f"ms-suite {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and MindSpore logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


@contextlib.contextmanager
def _command_process(debug: bool) -> Iterator[None]:
    """Process settings for one command, restored afterwards (so in-process callers such as tests and
    the processes they start later are not affected):

    - MindSpore's logs stay off the console (its errors arrive as exceptions, which the CLI prints as
      one line; ``--debug`` shows them);
    - SIGINT/SIGTERM are held before MindSpore starts threads, so the trainer takes them at a step
      boundary (commands that do not train release them after parsing)."""
    saved_env = {key: os.environ.get(key) for key in ("GLOG_v", "GLOG_logtostderr")}
    saved_mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    os.environ.setdefault("GLOG_v", "2" if debug else "4")
    os.environ.setdefault("GLOG_logtostderr", "1")
    hold_stop_signals()
    try:
        yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        signal.pthread_sigmask(signal.SIG_SETMASK, saved_mask)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    with _command_process(debug):
        args = build_parser().parse_args(argv)
        if args.command not in TRAINING_COMMANDS:
            release_stop_signals()
        return _run(args, debug)


def _run(args: argparse.Namespace, debug: bool) -> int:
    """The command's exit code: 0, a UserError's (2), 130/143 when interrupted, 1 when unexpected."""
    from ms_suite.engine.rundir import setup_logging

    setup_logging()
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        print(f"interrupted: {err}" if str(err) else "interrupted", file=sys.stderr)
        return getattr(err, "exit_code", 130)
    except Exception as err:  # an unexpected failure: say so in one line, keep the traceback for --debug
        if debug:
            raise
        logging.getLogger("ms_suite").debug("unexpected error", exc_info=True)
        print(f"error: {type(err).__name__}: {first_line(err)[:300]} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
