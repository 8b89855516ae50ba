"""Fashion-MNIST for MXNet: held on the device as uint8, resized per minibatch there."""

from collections.abc import Callable, Iterator

import mxnet as mx
import numpy as np
from mxnet import npx

from common.batches import Minibatches, shard
from common.fashion_mnist import FashionMNIST

npx.set_np()

# ---- Resizing on the device ----


def resize_batch(X: mx.np.ndarray, resize: int) -> mx.np.ndarray:
    """uint8 images (B, 28, 28) to float32 (B, 1, resize, resize) in [0, 1], bilinear."""
    X = mx.np.expand_dims(X.astype(np.float32) / 255, 1)  # (B, 1, 28, 28)
    # BilinearResize2D is a legacy operator: it takes mx.nd arrays (as_nd_ndarray() shares the memory).
    # align_corners=False samples at pixel centres, like PyTorch's F.interpolate(align_corners=False).
    X = mx.nd.contrib.BilinearResize2D(X.as_nd_ndarray(), height=resize, width=resize, align_corners=False)
    return X.as_np_ndarray()  # (B, 1, 224, 224)


def preprocess(images: np.ndarray, resize: int, device: mx.Context) -> np.ndarray:
    """uint8 images (B, 28, 28) to the network's float32 input (B, 1, resize, resize), as NumPy."""
    return resize_batch(mx.np.array(images, dtype=np.uint8, ctx=device), resize).asnumpy()


# ---- Minibatches ----


class DataIter(Minibatches):
    """Minibatches (X, y) of one split on the device, in a new order each epoch from the seed.

    With --devices N one process gets every whole minibatch: parallel.py shards it over its contexts. With
    `world` worker processes (kvstore dist_sync), worker `rank` gets only its shard of every minibatch.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, resize: int,
                 device: mx.Context, shuffle: bool, seed: int, rank: int = 0, world: int = 1,
                 total: Callable[[mx.np.ndarray], mx.np.ndarray] | None = None):
        super().__init__(len(labels), batch_size, shuffle, seed)
        self.images = mx.np.array(images, dtype=np.uint8, ctx=device)  # (N, 28, 28) uint8, 47 MB for all of train
        self.labels = mx.np.array(labels, dtype=np.int64, ctx=device)  # (N,) int64
        self.resize, self.device = resize, device
        self.rank, self.world = rank, world
        self.sum_over_workers = total  # several workers: adds up an array over them (parallel.py's kvstore)

    def total(self, x: mx.np.ndarray) -> mx.np.ndarray:
        """`x` summed over the workers' shards; one process saw them all: `x` itself."""
        return self.sum_over_workers(x) if self.world > 1 else x

    def shards(self) -> Iterator[tuple[mx.np.ndarray, mx.np.ndarray, int]]:
        """This process's (X, y) of each minibatch, with the minibatch's size (one process: all of it)."""
        order = self.order()
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        mine = [shard(batch, self.rank, self.world) for batch in batches]  # contiguous slices
        idx = mx.np.array(np.concatenate(mine), dtype=np.int64, ctx=self.device)  # one copy to the device per pass
        stop = 0
        for batch, mine_i in zip(batches, mine):
            idx_i = idx[stop:stop + len(mine_i)]
            stop += len(mine_i)
            yield resize_batch(self.images[idx_i], self.resize), self.labels[idx_i], len(batch)


# ---- Loading ----


def load_data_fashion_mnist(data: FashionMNIST, batch_size: int, resize: int, device: mx.Context, seed: int = 0,
                            rank: int = 0, world: int = 1, total: Callable | None = None) -> tuple[DataIter, DataIter]:
    """The training iterator (shuffled per epoch) and the test iterator (in order); worker `rank`'s shards."""
    train_iter = DataIter(data.train_images, data.train_labels, batch_size, resize, device, True, seed, rank, world,
                          total)
    test_iter = DataIter(data.test_images, data.test_labels, batch_size, resize, device, False, seed, rank, world,
                         total)
    return train_iter, test_iter
