"""A training run's directory: refuse to clobber, checkpoint atomically, resume exactly.

Layout of `--out`:
    state.json               the commit point: hyperparameters, epochs done, history, checkpoint name
    checkpoint-NNN.<ext>     the backend's native checkpoint after epoch NNN (the newest is kept), or
    checkpoint-NNN-BBBBB.<ext>  after minibatch BBBBB of epoch NNN (--checkpoint-every, Ctrl-C)
    metrics.jsonl            one JSON line per epoch
    curves.png               the book's plot of loss and accuracies
    weights.safetensors      the neutral weights, loadable by every backend (written with every checkpoint)
    summary.json             hyperparameters, versions, device, accuracy, throughput, wall time
    confusion.png            the test split's confusion matrix, at the end
    predictions.png          test images with their predicted and true labels, at the end
    .lock                    held by the process using the run (the OS releases it when that process ends)
"""

import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common.atomic import atomic_path, atomic_write_text
from common.errors import STOP_SIGNALS, UserError, silence_if_hung_up
from common.hparams import HParams
from common.lock import Held, NoLocks, hold, release
from common.metrics import book_line, counted, epoch_line, examples_per_sec, plot_curves, write_metrics
from common.spec import weights_bytes

RUN_FILES = ("state.json", "metrics.jsonl", "curves.png", "weights.safetensors", "summary.json", "confusion.png",
             "predictions.png")


def shell_word(text: str) -> str:
    """`text` quoted as one word of a command line: cmd.exe's and PowerShell's on Windows, a POSIX shell's elsewhere."""
    return subprocess.list2cmdline([text]) if os.name == "nt" else shlex.quote(text)


def stored_settings(out: Path) -> dict:
    """The hyperparameters of the run in `out` and its --data-dir (as `data_dir`); empty where there is no run."""
    try:
        state = json.loads((Path(out) / "state.json").read_text(encoding="utf-8"))
        return {**state["hparams"], "data_dir": state.get("data_dir")}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # Run says what is wrong when it opens the directory


def diverged(record: dict) -> bool:
    """Whether an epoch's loss or accuracies are not finite numbers (the run blew up)."""
    return not all(math.isfinite(record[k]) for k in ("loss", "train_acc", "test_acc"))


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done, then hand it to the handler it would have reached.

    An interrupt that lands inside a C extension's import (matplotlib's, on the first plot) makes
    the interpreter abort instead of stopping cleanly; held, it arrives once the epoch is recorded:
    inside the training loop as a stop request (so that every process stops at the same point),
    elsewhere as KeyboardInterrupt.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return
    held = []

    def hold(signum: int, frame: object) -> None:
        silence_if_hung_up(signum)  # at once: the epoch's line must not go to a terminal that is gone
        held.append(signum)

    previous = {s: signal.signal(s, hold) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if held:
        handler = previous[held[0]]
        if not callable(handler):  # the system's default action: stop as Ctrl-C does
            raise KeyboardInterrupt
        handler(held[0], None)  # the loop's stop request (common/epoch.py), or Python's KeyboardInterrupt


class CannotWrite(UserError):
    """A run's files could not be written (a full disk, a folder made read-only); the last checkpoint stays whole."""


class Interrupted(UserError):
    """The run was stopped by the user (Ctrl-C or SIGTERM); the last checkpoint is kept."""

    exit_code = 130  # the shell's status for a command ended by Ctrl-C


class Run:
    """The files of one training run in `out`, for one backend and one set of hyperparameters."""

    def __init__(self, out: Path, backend: str, hparams: HParams, ckpt_ext: str,
                 resume: bool = False, force: bool = False, data_dir: Path | None = None):
        self.out, self.backend, self.hparams, self.ckpt_ext = Path(out), backend, hparams, ckpt_ext
        self.data_dir = str(Path(data_dir).resolve()) if data_dir else None  # stored, for --resume
        self.state_path = self.out / "state.json"
        self.metrics_path = self.out / "metrics.jsonl"
        self.curves_path = self.out / "curves.png"
        self.weights_path = self.out / "weights.safetensors"
        self.summary_path = self.out / "summary.json"
        self.history: list[dict] = []
        self.checkpoint: Path | None = None  # the native checkpoint to resume from
        self.partial: dict | None = None  # where a run stopped inside an epoch (common/epoch.py), if it did
        self.started = time.perf_counter()
        self._lock = None
        if resume:
            self._resume()
        else:
            self._start(force)

    @property
    def start_epoch(self) -> int:
        """Epochs already done (0 for a new run)."""
        return len(self.history)

    def _existing(self) -> list[Path]:
        """The files of an earlier run in `out`."""
        return [p for p in self.out.glob("*") if p.name in RUN_FILES or p.name.startswith("checkpoint-")]

    def _start(self, force: bool) -> None:
        """Begin a new run, refusing to overwrite another one unless forced."""
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} is a file, not a directory: choose another --out")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot make the run directory {self.out} ({e.strerror or e}): "
                            f"choose another --out") from None
        self._hold_lock()
        old = self._existing()
        if old and not force:
            raise UserError(f"{self.out} already holds a run: pass --resume to continue it, --force to "
                            f"overwrite it, or choose another --out")
        for path in old:
            path.unlink()

    def _resume(self) -> None:
        """Load the history and checkpoint name of the run in `out`, refusing a mismatch."""
        if not self.state_path.is_file():
            raise UserError(f"nothing to resume in {self.out} (no state.json): drop --resume to start "
                            f"a new run, or point --out at the run to continue")
        self._hold_lock()
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{self.state_path} is corrupt ({e}): start a new run with --force") from None
        if state["backend"] != self.backend:
            raise UserError(self._other_framework(state["backend"]))
        self._check_same_hparams(state["hparams"])
        self.history, self.partial = state["history"], state.get("partial")
        self.checkpoint = self.out / state["checkpoint"]
        if self.start_epoch >= self.hparams.num_epochs:
            raise UserError(f"the run in {self.out} has done its {self.start_epoch} epochs: pass a larger "
                            f"--epochs to train on")

    def _other_framework(self, backend: str) -> str:
        """Why another framework's run cannot be resumed here, and the ways on: in its own, or from its weights."""
        out = shell_word(str(self.out))
        there = (f"{self.out} holds a {backend} run, and checkpoints do not cross frameworks: continue it with "
                 f"python -m alexnet_{backend}.train --out {out} --resume")
        if not (flag := self._init_weights_flag()):
            return f"{there}, or start a new {self.backend} run in another --out"
        return (f"{there}, or train on in {self.backend} from its network so far (neutral weights): drop --resume, "
                f"give {flag} and another --out")

    def _init_weights_flag(self) -> str | None:
        """`--init-weights PATH` for the network so far that the run wrote beside its checkpoint; None without one."""
        return f"--init-weights {shell_word(str(self.weights_path))}" if self.weights_path.is_file() else None

    def _hold_lock(self) -> None:
        """Take the run directory's lock, or refuse at once if another process holds it."""
        try:
            self._lock = hold(self.out / ".lock")
        except Held as holder:
            raise UserError(f"{self.out} is in use by a run that is still going ({holder}): wait for it to end, "
                            f"or choose another --out") from None
        except NoLocks as why:  # the lock only guards against a second run: no reason to stop this one
            print(f"note: {self.out} is on a filesystem without file locks ({why}), so this run goes on without "
                  f"its lock: start no other run in it while this one goes")

    def close(self) -> None:
        """Let go of the run directory (the lock); the files stay."""
        if self._lock is not None:
            release(self._lock)
            self._lock = None

    def _check_same_hparams(self, saved: dict) -> None:
        """Refuse to resume with different hyperparameters (more epochs are allowed)."""
        now = self.hparams.to_dict()
        diffs = [f"{k} {now[k]} (the run has {saved.get(k)})" for k in now
                 if k != "num_epochs" and now[k] != saved.get(k)]
        if diffs:
            raise UserError(f"cannot resume {self.out} with different settings: {'; '.join(diffs)}; "
                            f"resume with the run's settings, or start a new run with another --out")

    # ---- One epoch done ----

    def end_epoch(self, record: dict, write_checkpoint: Callable[[Path], None],
                  write_weights: Callable[[Path], None] | None = None) -> None:
        """Record an epoch: checkpoint (and neutral weights) atomically, then metrics, curves and the epoch line."""
        if diverged(record):
            self.stop_diverged(record["loss"], record["epoch"])
        with interrupts_held(), self._writing():  # Ctrl-C lands after the epoch's files, not inside a write
            history = [*self.history, record]
            self._commit(f"checkpoint-{record['epoch']:03d}.{self.ckpt_ext}", write_checkpoint, history, None,
                         write_weights)
            write_metrics(self.metrics_path, history)
            plot_curves(self.curves_path, history, self.hparams.num_epochs, f"AlexNet ({self.backend})")
            print(epoch_line(record, self.hparams.num_epochs), flush=True)

    def stop_diverged(self, loss: float, epoch: int) -> None:
        """Stop the run whose training loss is no longer a finite number, keeping the last checkpoint."""
        raise UserError(f"the training loss became {loss} in epoch {epoch}: the run diverged (try a smaller "
                        f"--lr); {self.saved()}")

    def save_partial(self, partial: dict, write_checkpoint: Callable[[Path], None],
                     write_weights: Callable[[Path], None] | None = None) -> None:
        """Record a run stopped inside an epoch: its checkpoint there and what resuming needs (common/epoch.py)."""
        with interrupts_held(), self._writing():
            name = f"checkpoint-{partial['epoch']:03d}-{partial['batch']:05d}.{self.ckpt_ext}"
            self._commit(name, write_checkpoint, self.history, partial, write_weights)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A checkpoint's writes: refused without room, and a failure for want of room or by the OS is CannotWrite.

        The room is checked before the framework's writer starts, as a full disk can leave one in a bad state
        (TensorFlow's h5py crashed as the process ended). Other errors keep their traceback.
        """
        if why := self._disk_full():
            raise CannotWrite(f"cannot write the run's files in {self.out} ({why})")
        try:
            yield
        except Exception as e:
            why = self._disk_full()
            if why is None and not isinstance(e, OSError):
                raise  # not the disk's doing: a bug, with its traceback
            why = why or (os.strerror(e.errno) if e.errno else str(e).splitlines()[0][:120])
            raise CannotWrite(f"cannot write the run's files in {self.out} ({why})") from None

    def _disk_full(self) -> str | None:
        """Whether the folder lacks room for a checkpoint and the weights file beside it, in words; None if not."""
        need = 2 * weights_bytes(self.hparams.resize)
        try:
            free = shutil.disk_usage(self.out).free
        except OSError:  # the folder itself is gone: the write's own error says so
            return None
        if free >= need:
            return None
        return (f"the disk is full: {free / 1e6:,.1f} MB free there, and a checkpoint with its weights takes "
                f"{need / 1e6:,.0f} MB")

    def _commit(self, name: str, write_checkpoint: Callable[[Path], None], history: list[dict],
                partial: dict | None, write_weights: Callable[[Path], None] | None) -> None:
        """Write the checkpoint and the weights, then state.json naming it (the commit point), then drop older ones."""
        with atomic_path(self.out / name) as tmp:
            write_checkpoint(tmp)
        if write_weights:  # the network so far, for predict, export and --init-weights (written atomically)
            write_weights(self.weights_path)
        state = {"backend": self.backend, "hparams": self.hparams.to_dict(), "data_dir": self.data_dir,
                 "epoch": len(history), "checkpoint": name, "history": history, "partial": partial}
        atomic_write_text(self.state_path, json.dumps(state, indent=1))
        for old in self.out.glob(f"checkpoint-*.{self.ckpt_ext}"):
            if old.name != name:
                old.unlink()
        self.history, self.partial, self.checkpoint = history, partial, self.out / name

    def kept(self) -> str:
        """What the last checkpoint holds, in words."""
        if self.partial:
            p = self.partial
            before = f", after {counted(len(self.history), 'whole epoch')}" if self.history else ""
            return f"epoch {p['epoch']} up to minibatch {p['batch']} of {p['batches']}{before}"
        return f"epoch {self.start_epoch}"

    def saved(self) -> str:
        """What a run that stops now leaves, in words: its last checkpoint, or nothing."""
        if self.checkpoint:
            return f"the checkpoint of {self.kept()} is kept in {self.out}"
        return f"nothing was saved in {self.out}"

    def without_checkpoint(self) -> str:
        """How to go on from a checkpoint that cannot be read, in words: from the weights beside it, or anew."""
        anew = "start the run again with --force"
        if not (flag := self._init_weights_flag()):
            return anew
        left = self.hparams.num_epochs - self.start_epoch
        return (f"{anew}, or go on from the network so far, which the run wrote beside it: give the run's command "
                f"{flag} --epochs {left} and another --out")

    def cannot_write(self, error: CannotWrite, command: str) -> CannotWrite:
        """The error to stop with when a checkpoint could not be written: what was kept, and how to go on."""
        if not self.checkpoint:
            return CannotWrite(f"{error}, so nothing was saved: make room there or choose another --out, and run "
                               f"the same command again")
        return CannotWrite(f"{error}: the checkpoint of {self.kept()} is kept; make room there, then continue "
                           f"with: {command} --out {shell_word(str(self.out))} --resume")

    def interrupted(self, command: str | None = None) -> Interrupted:
        """The error to raise on Ctrl-C or SIGTERM, naming what was kept and the command that goes on."""
        command = command or f"python -m alexnet_{self.backend}.train"
        if not self.history and not self.partial:
            return Interrupted(f"interrupted before the first checkpoint, so nothing was saved in {self.out}; "
                               f"run the same command again to start over")
        weights = f" (the network so far: {self.weights_path.name})" if self.weights_path.is_file() else ""
        return Interrupted(f"interrupted: the checkpoint of {self.kept()} is kept in {self.out}{weights}; "
                           f"continue with: {command} --out {shell_word(str(self.out))} --resume")

    def finish(self, device: str, extra: dict) -> str:
        """Write summary.json and return the book's final line."""
        line = book_line(self.history, device)
        last = self.history[-1]
        summary = {"backend": self.backend, "hparams": self.hparams.to_dict(), "device": device,
                   "epochs": len(self.history), "loss": last["loss"], "train_acc": last["train_acc"],
                   "test_acc": last["test_acc"], "examples_per_sec": examples_per_sec(self.history),
                   "wall_time": sum(r["epoch_time"] for r in self.history), "book_line": line,
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
        atomic_write_text(self.summary_path, json.dumps(summary, indent=1))
        return line
