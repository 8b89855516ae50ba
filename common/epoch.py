"""One epoch's bookkeeping, the same in every backend's loop: where it starts, each minibatch's dropout
seed, the progress bar, the training curves' points, and stopping cleanly in the middle.

Ctrl-C, SIGTERM or SIGHUP (the terminal closed) asks the loop to stop: it finishes the minibatch it is
on, writes a checkpoint there and stops; `--resume` continues from the next minibatch with the same
weights, sums, data order and dropout masks as a run that never stopped. A second Ctrl-C stops at once
(the last checkpoint stays). A checkpoint is also written every `--checkpoint-every` minutes, against a
crash or `kill -9`.
"""

import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from common.batches import Minibatches, batch_seed, num_batches
from common.errors import STOP_SIGNALS, silence_if_hung_up
from common.metrics import epoch_record, progress, run_left
from common.run import Run

POINTS_PER_EPOCH = 5  # training loss and accuracy points per epoch on the curves, as the book's plot has


class StopRequests:
    """While active, Ctrl-C, SIGTERM and SIGHUP ask the loop to stop after the minibatch it is on; twice: at once."""

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def _ask(self, signum: int, frame: object) -> None:
        silence_if_hung_up(signum)  # a closed terminal: the progress bar and the messages go nowhere from now on
        if self.requested:
            raise KeyboardInterrupt  # asked twice: stop now, the last checkpoint stays
        self.requested = True
        print("\nstopping after this minibatch, which is kept (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():  # only the main thread gets signals
            self._previous = {s: signal.signal(s, self._ask) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


@dataclass
class Loop:
    """What the training loop needs besides the network: the run, and how to stop and checkpoint."""

    run: Run
    num_test: int  # test images, for the whole run's time left
    stop: StopRequests
    agree: Callable[[bool], bool]  # True if any process says True (several processes must stop together)
    checkpoint_every: float = 15 * 60  # seconds between checkpoints inside an epoch
    no_progress: bool = False
    write_weights: Callable | None = None  # the neutral weights to a path, beside every checkpoint

    def epochs(self, train_iter: Minibatches, write_checkpoint: Callable) -> Iterator["Epoch"]:
        """The epochs still to train, the first one from where a stopped run left it."""
        hp = self.run.hparams
        for number in range(self.run.start_epoch + 1, hp.num_epochs + 1):
            epoch = Epoch(self, number, train_iter.num_examples, hp.batch_size, write_checkpoint)
            yield epoch
            epoch.close()


class Epoch:
    """One epoch in progress: its start, its sums so far, its bar and points; written down when stopped."""

    def __init__(self, loop: Loop, number: int, num_examples: int, batch_size: int, write_checkpoint: Callable):
        self.loop, self.run, self.number = loop, loop.run, number
        self.num_examples, self.num_batches = num_examples, num_batches(num_examples, batch_size)
        self.write_checkpoint = write_checkpoint
        partial = self.run.partial if self.run.partial and self.run.partial["epoch"] == number else {}
        self.start_batch = partial.get("batch", 0)  # minibatches already done
        self.sums = partial.get("sums", [0.0, 0.0])  # summed loss and number correct so far (this process's)
        self.seen = partial.get("seen", 0)  # training images so far
        self.points = partial.get("points", [])  # (epoch, loss, acc) along the way, for the curves
        self.train_time = partial.get("train_time", 0.0)
        self.started = self.last_saved = self.evaluating = time.perf_counter()
        self.bar = progress(num_examples, number, self.run.hparams.num_epochs, loop.no_progress, initial=self.seen)

    def seed(self, i: int) -> int:
        """The framework seed for minibatch i's dropout: the same masks on resume."""
        return batch_seed(self.run.hparams.seed, self.number, i)

    def minibatches(self, batches: Iterable) -> Iterator[tuple[int, object]]:
        """(i, minibatch) from the first one not done (the iterator starts there too: DataIter.set_epoch)."""
        return enumerate(batches, start=self.start_batch)

    def done(self, i: int, n: int, read_sums: Callable[[], list[float]]) -> None:
        """After minibatch i of n images: the bar, a curve point now and then, a checkpoint if asked or due."""
        self.seen += n
        self.bar.update(n)
        if not self.bar.disable:  # the whole run's time left, beside this epoch's
            self.bar.set_postfix_str(run_left(self.bar, self.num_examples, self.loop.num_test, self.number,
                                              self.run.hparams.num_epochs), refresh=False)
        last = i + 1 == self.num_batches
        point = (i + 1) % max(1, self.num_batches // POINTS_PER_EPOCH) == 0 and not last  # the end has its own
        stop = self.loop.agree(self.loop.stop.requested)
        due = self.loop.agree(time.perf_counter() - self.last_saved > self.loop.checkpoint_every)
        if not (point or ((stop or due) and not last)):
            return
        sums = read_sums()  # waits for the device (and, on several processes, adds up their shards)
        if not math.isfinite(sums[0]):  # stop now: a checkpoint from here on would keep the broken weights
            self.bar.close()
            self.run.stop_diverged(sums[0] / self.seen, self.number)
        if point:
            self.points.append([self.number - 1 + (i + 1) / self.num_batches, sums[0] / self.seen,
                                sums[1] / self.seen])
        if (stop or due) and not last:  # at the last minibatch the epoch's own checkpoint follows at once
            self._save(i + 1, sums)
            if stop:
                self.bar.close()  # the message that follows gets a line of its own
                raise KeyboardInterrupt

    def _save(self, batch: int, sums: list[float]) -> None:
        """A checkpoint after `batch` minibatches of this epoch, with what resuming needs."""
        train_time = self.train_time + time.perf_counter() - self.started
        partial = {"epoch": self.number, "batch": batch, "batches": self.num_batches, "sums": sums,
                   "seen": self.seen, "train_time": train_time, "points": self.points}
        self.run.save_partial(partial, lambda path: self.write_checkpoint(path, self.number), self.loop.write_weights)
        self.last_saved = time.perf_counter()

    def means(self, sums: list[float]) -> tuple[float, float, float]:
        """The epoch's mean loss and accuracy from its sums, and its training seconds (stopped time left out)."""
        self.bar.close()
        self.evaluating = time.perf_counter()
        train_time = self.train_time + self.evaluating - self.started
        return sums[0] / self.num_examples, sums[1] / self.num_examples, train_time

    def end(self, train_l: float, train_acc: float, train_time: float, test_acc: float) -> None:
        """Record the epoch and its checkpoint; stop now if asked during the evaluation."""
        epoch_time = train_time + time.perf_counter() - self.evaluating  # training and evaluation
        record = epoch_record(self.number, train_l, train_acc, test_acc, self.num_examples, train_time,
                              epoch_time, self.points)
        self.run.end_epoch(record, lambda path: self.write_checkpoint(path, self.number), self.loop.write_weights)
        if self.loop.agree(self.loop.stop.requested):  # every process stops here, or none does
            raise KeyboardInterrupt

    def close(self) -> None:
        """Close the bar (idempotent)."""
        self.bar.close()
