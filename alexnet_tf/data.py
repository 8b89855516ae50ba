"""Fashion-MNIST for TensorFlow: held on the device as uint8, resized per minibatch there."""

from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from common.batches import Minibatches
from common.fashion_mnist import FashionMNIST

# ---- Resizing on the device ----


def resize_batch(X: tf.Tensor, resize: int) -> tf.Tensor:
    """uint8 images (B, 28, 28) to float32 (B, resize, resize, 1) in [0, 1], bilinear."""
    X = tf.cast(X[..., tf.newaxis], tf.float32) / 255  # (B, 28, 28, 1)
    return tf.image.resize(X, (resize, resize), method="bilinear", antialias=False)  # (B, 224, 224, 1)


def preprocess(images: np.ndarray, resize: int, device: str) -> np.ndarray:
    """uint8 images (B, 28, 28) to the network's float32 input (B, 1, resize, resize), as NumPy."""
    with tf.device(device):
        X = resize_batch(tf.constant(images), resize)  # (B, resize, resize, 1)
    return np.transpose(X.numpy(), (0, 3, 1, 2))  # canonical NCHW


# ---- Minibatches ----


class DataIter(Minibatches):
    """Minibatches (X, y) of one split on the device, in a new order each epoch from the seed.

    With several replicas (--devices N), this one process still yields every whole minibatch:
    tf.distribute cuts it into the replicas' shares (alexnet_tf/parallel.py).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, resize: int,
                 device: str, shuffle: bool, seed: int):
        super().__init__(len(labels), batch_size, shuffle, seed)
        with tf.device(device):
            self.images = tf.identity(images)  # (N, 28, 28) uint8, 47 MB for all of train
            self.labels = tf.identity(labels)  # (N,) int64
        self.resize, self.device = resize, device

    def total(self, x: tf.Tensor) -> tf.Tensor:
        """`x` summed over the replicas' shards: `x` itself, as one process holds all the shards."""
        return x

    def shards(self) -> Iterator[tuple[tf.Tensor, tf.Tensor, int]]:
        """This process's (X, y) of each minibatch, with the minibatch's size: all of it, every replica's share."""
        order = self.order()
        with tf.device(self.device):
            order = tf.identity(order)
        for i in range(0, len(order), self.batch_size):
            with tf.device(self.device):  # not around the yield: the scope would leak to the caller
                idx = order[i:i + self.batch_size]
                X, y = resize_batch(tf.gather(self.images, idx), self.resize), tf.gather(self.labels, idx)
            yield X, y, len(y)


# ---- Loading ----


def load_data_fashion_mnist(data: FashionMNIST, batch_size: int, resize: int,
                            device: str, seed: int = 0) -> tuple[DataIter, DataIter]:
    """The training iterator (shuffled per epoch) and the test iterator (in order)."""
    train_iter = DataIter(data.train_images, data.train_labels, batch_size, resize, device, True, seed)
    test_iter = DataIter(data.test_images, data.test_labels, batch_size, resize, device, False, seed)
    return train_iter, test_iter
