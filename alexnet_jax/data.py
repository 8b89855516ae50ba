"""Fashion-MNIST for JAX: held on the device as uint8, resized per minibatch there (one compiled function)."""

from collections.abc import Iterator
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from common.batches import Minibatches
from common.fashion_mnist import FashionMNIST

NO_LABEL = -1  # the label of the rows that pad a minibatch to a multiple of the replicas: never counted

# ---- Resizing on the device ----


def resize_batch(X: jax.Array, resize: int) -> jax.Array:
    """uint8 images (B, 28, 28) to float32 (B, resize, resize, 1) in [0, 1], bilinear."""
    X = X[..., None].astype(jnp.float32) / 255  # (B, 28, 28, 1)
    # Half-pixel centres; antialias only ever widens the kernel when shrinking, and this only enlarges.
    size = (X.shape[0], resize, resize, 1)
    return jax.image.resize(X, size, method="bilinear", antialias=False)  # (B, 224, 224, 1)


def preprocess(images: np.ndarray, resize: int, device: jax.Device) -> np.ndarray:
    """uint8 images (B, 28, 28) to the network's float32 input (B, 1, resize, resize), as NumPy."""
    X = jax.jit(resize_batch, static_argnums=1)(jax.device_put(images, device), resize)  # (B, resize, resize, 1)
    return np.transpose(np.asarray(X), (0, 3, 1, 2))  # canonical NCHW


def _gather_resize(images: jax.Array, labels: jax.Array, idx: jax.Array, resize: int) -> tuple[jax.Array, jax.Array]:
    """One minibatch picked by `idx` and resized; an index of -1 gives a padding row labelled NO_LABEL."""
    X = resize_batch(images[jnp.maximum(idx, 0)], resize)  # (B, 28, 28) -> (B, 224, 224, 1)
    return X, jnp.where(idx >= 0, labels[jnp.maximum(idx, 0)], NO_LABEL)


# ---- Minibatches ----


def _put(x: np.ndarray, where: jax.sharding.Sharding) -> jax.Array:
    """`x`, the same in every process, laid out by `where`: each process places the parts its own devices hold."""
    return jax.make_array_from_callback(x.shape, where, lambda index: x[index])


class DataIter(Minibatches):
    """Minibatches (X, y) of one split on the device, in a new order each epoch from the seed.

    With several replicas (--devices N, a `mesh`), every process yields every whole minibatch as one global
    array laid out across the mesh: each replica picks and resizes its contiguous share of it, padded with
    NO_LABEL rows to a multiple of the replicas (alexnet_jax/parallel.py). Across several processes each
    holds the whole split and draws the same order from the seed, so each computes its own devices' shares.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, resize: int,
                 device: jax.Device, shuffle: bool, seed: int, mesh: Mesh | None = None):
        super().__init__(len(labels), batch_size, shuffle, seed)
        self.resize, self.device, self.mesh = resize, device, mesh
        if mesh is None:  # one device: the data and every minibatch on it
            held = batch = jax.sharding.make_single_device_sharding(device)
        else:  # each replica a copy of the data (47 MB), each minibatch cut along the mesh
            held, batch = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("batch"))
        self.images = _put(images, held)  # (N, 28, 28) uint8, 47 MB for all of train
        self.labels = _put(labels.astype(np.int32), held)  # (N,) int32: JAX's default integers
        self.held = held
        self._batch = jax.jit(partial(_gather_resize, resize=resize), out_shardings=(batch, batch))

    def total(self, x: jax.Array) -> jax.Array:
        """`x` summed over the replicas' shards: `x` itself, a sum over whole minibatches (on every process)."""
        return x

    def shards(self) -> Iterator[tuple[jax.Array, jax.Array, int]]:
        """This process's (X, y) of each minibatch, with the minibatch's size: all of it, every replica's share."""
        order = self.order()
        replicas = 1 if self.mesh is None else self.mesh.size
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            padded = np.pad(idx, (0, -len(idx) % replicas), constant_values=-1)  # uneven shares: padding rows
            X, y = self._batch(self.images, self.labels, _put(padded.astype(np.int32), self.held))
            yield X, y, len(idx)


# ---- Loading ----


def load_data_fashion_mnist(data: FashionMNIST, batch_size: int, resize: int, device: jax.Device,
                            seed: int = 0, mesh: Mesh | None = None) -> tuple[DataIter, DataIter]:
    """The training iterator (shuffled per epoch) and the test iterator (in order); across `mesh`'s replicas."""
    train_iter = DataIter(data.train_images, data.train_labels, batch_size, resize, device, True, seed, mesh)
    test_iter = DataIter(data.test_images, data.test_labels, batch_size, resize, device, False, seed, mesh)
    return train_iter, test_iter
