"""The one exception type for bad input, and how a command shows it: one line and an exit status."""

import argparse
import os
import signal
import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""

    exit_code = 2  # the command's exit status, as argparse's for a bad flag


class DataError(UserError):
    """A missing, truncated, corrupt or mismatched data file."""


class InputTooSmallError(UserError, ValueError):
    """An input side too small for AlexNet's stack of strided layers."""


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default after its help, once: not for on/off flags or defaults the help already states."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").removesuffix(" (default: %(default)s)")  # Python 3.10's BooleanOptionalAction
        if action.default is None or action.default is False or "default" in text:  # 0 == False: --seed
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the problem, and where to look for the fix."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Say the problem and where the help is, in one line, and exit 2."""
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _sigterm(signum: int, frame: object) -> None:
    """Treat SIGTERM like Ctrl-C, so that a killed run stops the same clean way."""
    raise KeyboardInterrupt


def run_cli(main: Callable[[], object]) -> None:
    """Run a command: a UserError becomes one line on stderr and a non-zero exit status."""
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        try:
            main()
        finally:
            sys.stdout.flush()  # a reader that left shows here, not in a traceback at exit
    except BrokenPipeError:  # `| head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the flush at exit is silent
        sys.exit(1)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
