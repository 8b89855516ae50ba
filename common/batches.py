"""Which examples go in which minibatch: the same order in every backend, from the seed."""

from collections.abc import Iterator
from typing import Any

import numpy as np


def epoch_order(num_examples: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The example order for one epoch: a permutation drawn from (seed, epoch), or 0..n-1."""
    if not shuffle:
        return np.arange(num_examples)
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def num_batches(num_examples: int, batch_size: int) -> int:
    """Minibatches per epoch; the last one may be smaller, as in the book's DataLoader."""
    return -(-num_examples // batch_size)


def batch_seed(seed: int, epoch: int, batch: int) -> int:
    """The framework seed for one minibatch's dropout, so that a run resumed mid-epoch repeats it exactly."""
    return int(np.random.default_rng([seed, epoch, batch, 2]).integers(2**31 - 1))


def shard(idx: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Replica `rank`'s share of one global minibatch: a contiguous slice, sizes differing by at most 1."""
    return np.array_split(idx, world)[rank]


class Minibatches:
    """The framework-free half of every backend's DataIter: its size, its epoch and its order."""

    def __init__(self, num_examples: int, batch_size: int, shuffle: bool, seed: int):
        self.num_examples, self.batch_size = num_examples, batch_size  # examples in one pass
        self.shuffle, self.seed, self.epoch, self.start = shuffle, seed, 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Choose the epoch whose order the next pass uses, from minibatch `start` on (so that a resume repeats it)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return num_batches(self.num_examples, self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        """(X, y) of each minibatch, as the book's loops take them: `shards()` without the minibatch's size."""
        for X, y, _ in self.shards():
            yield X, y

    def shards(self) -> Iterator[tuple[Any, Any, int]]:
        """This replica's (X, y) of each minibatch, with the minibatch's size: each backend's DataIter says how."""
        raise NotImplementedError

    def order(self) -> np.ndarray:
        """This epoch's example order, from its first minibatch not done (a whole number of minibatches in)."""
        return epoch_order(self.num_examples, self.seed, self.epoch, self.shuffle)[self.start * self.batch_size:]
