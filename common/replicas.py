"""Where a run trains: the replicas of data-parallel training, described the same way in every backend.

A backend's `replicas()` returns a `Replicas`: its device, the book's device name, how many replicas
take a share of every minibatch, and this process's place among the processes (several only under a
launcher: torchrun for PyTorch, common.launch for the others; by default TensorFlow, MXNet and JAX
drive all their replicas from one process). Only the main process (rank 0) reads and writes the run
directory; the others follow it.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError
from common.hparams import HParams
from common.run import Run, diverged

Step = Callable[..., tuple[Any, Any]]  # step(X, y, n) -> (summed loss, number correct) on one minibatch


def broadcast_json(value: object, from_main: Callable[[np.ndarray], np.ndarray], block: int = 1) -> object:
    """The main process's JSON-able `value` on every process: its length first, then its bytes.

    `from_main(array)` is the backend's collective: the main process's array, of the same shape, on every
    process. The bytes travel padded to a multiple of `block` (few shapes: few compilations, in JAX).
    """
    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    size = int(np.asarray(from_main(np.array([len(data)], np.int64)))[0])
    padded = np.zeros(-(-size // block) * block, np.uint8)  # the main process's length, on every process
    padded[:min(size, len(data))] = data[:size]
    return json.loads(np.asarray(from_main(padded))[:size].astype(np.uint8).tobytes())


def _alone(value: object) -> object:
    """Broadcast or agree among one process: the value itself."""
    return value


def _here() -> None:
    """Meet the other processes, with none: nothing to wait for."""


@dataclass(frozen=True)
class Replicas:
    """The replicas a run trains on, as this process sees them."""

    device: Any  # this process's (first) device: it holds the data and evaluates
    name: str  # the device as the book's line prints it, widened to the replicas
    on_cpu: bool  # whether it computes on the CPU (where a long run's time is worth estimating)
    count: int = 1  # replicas in all, as the framework's engine reports them (not the flag)
    rank: int = 0  # this process among `processes`
    processes: int = 1  # processes taking part (torchrun starts one per replica; common.launch as many as asked)
    engine: Any = None  # the framework's own handle: a tf.distribute strategy, MXNet's contexts and kvstore, a JAX Mesh
    broadcast: Callable[[object], object] = field(default=_alone, repr=False)  # rank 0's value, everywhere
    agree: Callable[[bool], bool] = field(default=_alone, repr=False)  # True everywhere if True anywhere
    meet: Callable[[], None] = field(default=_here, repr=False)  # returns once every process has called it

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run and prints (rank 0)."""
        return self.rank == 0


class Follower:
    """The run as processes other than rank 0 see it: its settings and epochs done; rank 0 writes it."""

    checkpoint = None  # rank 0 loads it; the engine copies its weights to the others

    def __init__(self, hparams: HParams, start_epoch: int, partial: dict | None):
        self.hparams, self.start_epoch = hparams, start_epoch
        # Where rank 0 stopped inside an epoch; the sums so far are rank 0's to hold (they are all the shards').
        self.partial = partial and {**partial, "sums": [0.0, 0.0]}

    def save_partial(self, partial: dict, write_checkpoint: Callable[[Path], None],
                     write_weights: Callable[[Path], None] | None = None) -> None:
        """Nothing to write (rank 0 does)."""

    def end_epoch(self, record: dict, write_checkpoint: Callable[[Path], None],
                  write_weights: Callable[[Path], None] | None = None) -> None:
        """Nothing to write or print (rank 0 does); stop with rank 0's Run when the loss is not finite."""
        if diverged(record):
            self.stop_diverged(record["loss"], record["epoch"])

    def stop_diverged(self, loss: float, epoch: int) -> None:
        """Stop quietly with rank 0, which says that the run diverged (the summed losses are the same everywhere)."""
        raise SystemExit(2)

    def interrupted(self, command: str | None = None) -> SystemExit:
        """Stop quietly: rank 0 says what was kept."""
        return SystemExit(130)

    def close(self) -> None:
        """Nothing held."""


def same_settings(replicas: Replicas, hparams: HParams) -> None:
    """Stop every process, each saying why, when they were not all given the same settings as rank 0."""
    ours = {**hparams.to_dict(), "devices": replicas.count}
    theirs = replicas.broadcast(ours)  # rank 0's
    differ = {k: (v, theirs.get(k)) for k, v in ours.items() if theirs.get(k) != v}
    if replicas.agree(bool(differ)):  # True on every process when any of them differs
        said = ", ".join(f"{k} {v} here but {w} in process 0" for k, (v, w) in differ.items())
        raise UserError(f"the processes were started with different settings ({said or 'see the others'}): "
                        f"give every process the same flags")


def shared_run(replicas: Replicas, hparams: HParams, make_run: Callable[[], Run]) -> Run | Follower:
    """The run on rank 0 (made by `make_run`); on the other processes, a Follower told the epochs done."""
    if replicas.processes == 1:
        return make_run()
    same_settings(replicas, hparams)
    if replicas.is_main:
        done = None  # stays None if rank 0 cannot open the run: the others then stop too
        try:
            run = make_run()
            done = (run.start_epoch, run.partial)
        finally:
            replicas.broadcast(done)
        return run
    done = replicas.broadcast(None)
    if done is None:
        raise SystemExit(2)  # rank 0 has said why
    return Follower(hparams, *done)
