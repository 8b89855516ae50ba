"""The one exception type for bad input, the parser and the number and path types that say it, and how a command
shows it.

Each shows as one line and an exit status, a framework's out-of-memory error too.
"""

import argparse
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""

    exit_code = 2  # the command's exit status, as argparse's for a bad flag


class DataError(UserError):
    """A missing, truncated, corrupt or mismatched data file."""


class InputTooSmallError(UserError, ValueError):
    """An input side too small for AlexNet's stack of strided layers."""


# What each framework's error says when an allocation fails: PyTorch ("CUDA out of memory", "can't allocate
# memory" from its CPU allocator), TensorFlow ("OOM when allocating"), JAX ("Out of memory allocating"), MXNet
# ("cudaMalloc ... out of memory", and a tensor of 2^31 elements or more, which its build cannot index), NumPy's
# MemoryError ("Unable to allocate").
_SAYS_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "oom when allocating", "unable to allocate",
                       "larger than 2^31 elements")


def out_of_memory(error: BaseException) -> bool:
    """Whether a framework's error says that memory ran out (each says it in its own words)."""
    return isinstance(error, MemoryError) or any(s in str(error).lower() for s in _SAYS_OUT_OF_MEMORY)


def memory_ran_out(error: BaseException, then: str = "") -> UserError:
    """A framework's out-of-memory error as one line: its own words from where it says so, and the fix."""
    text = " ".join(str(error).split())
    start = min((text.lower().find(s) for s in _SAYS_OUT_OF_MEMORY if s in text.lower()), default=0)
    start = max((text.rfind(end, 0, start) + len(end) for end in (". ", ": ", "} ", "] ") if end in text[:start]),
                default=0)  # from the start of its sentence: "CUDA out of memory", not a {{function_node ...}}
    words = text[start:start + 120].rstrip(". ") + ("..." if len(text) > start + 120 else "")
    return UserError(f"too large for memory ({type(error).__name__}: {words}): use a smaller --batch-size or "
                     f"--resize{then}")


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


def _number(cast: Callable, minimum: float, what: str, maximum: float = math.inf) -> Callable[[str], float]:
    """An argparse type that accepts numbers from `minimum` to `maximum`, with a clear message."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (minimum <= value <= maximum and math.isfinite(value)):  # also refuses nan and inf
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


positive_int = _number(int, 1, "a whole number of at least 1")
positive_float = _number(float, 1e-300, "a number above 0")
seed_number = _number(int, 0, "a whole number from 0 to 4294967295 (2**32 - 1, NumPy's and Keras's largest seed)",
                      maximum=2**32 - 1)
MAX_PORT = 65535
port_number = _number(int, 1, f"a port from 1 to {MAX_PORT}", maximum=MAX_PORT)


def path_arg(text: str) -> Path:
    """An argparse type for a path: an empty one (`--out "$OUT"` with OUT unset) is refused, not read as this folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r} (an unset shell variable?)")
    return Path(text)


# The signals that stop a run cleanly, at the minibatch it is on: Ctrl-C, SIGTERM (kill, a scheduler) and,
# where there is one, SIGHUP (the terminal closed, an SSH connection lost), which by default ends a process
# at once.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def silence_if_hung_up(signum: int) -> None:
    """After SIGHUP the terminal is gone: what the process prints from now on goes nowhere, as under nohup."""
    if signum != getattr(signal, "SIGHUP", None):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # the terminal refused what was left (EIO)
            pass
        os.dup2(devnull, stream.fileno())
    os.close(devnull)


def _sigterm(signum: int, frame: object) -> None:
    """Treat SIGTERM and SIGHUP like Ctrl-C, so that a killed run stops the same clean way."""
    silence_if_hung_up(signum)
    raise KeyboardInterrupt


def run_cli(main: Callable[[], object]) -> None:
    """Run a command: a UserError becomes one line on stderr and a non-zero exit status."""
    for s in STOP_SIGNALS[1:]:  # Python makes SIGINT a KeyboardInterrupt itself
        signal.signal(s, _sigterm)
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
    except Exception as e:  # a framework's out-of-memory error: a GPU's, or an allocation the OS refused
        if not out_of_memory(e):
            raise
        print(f"error: {memory_ran_out(e)}", file=sys.stderr)
        sys.exit(UserError.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
