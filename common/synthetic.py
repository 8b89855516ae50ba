"""Random uint8 images and labels shaped like Fashion-MNIST, for benchmarks (speed, not accuracy)."""

import numpy as np

from common.fashion_mnist import FashionMNIST
from common.hparams import IMAGE_SIDE, NUM_CLASSES


def random_dataset(num_train: int, num_test: int, seed: int = 0) -> FashionMNIST:
    """A FashionMNIST of noise: the same sizes and dtypes as the real thing."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        images = rng.integers(0, 256, (n, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
        return images, rng.integers(0, NUM_CLASSES, n).astype(np.int64)

    return FashionMNIST(*split(num_train), *split(num_test), source="random", official=False)


def bench_dataset(batch_size: int, steps: int) -> FashionMNIST:
    """Noise for a benchmark: one warm-up plus `steps` training minibatches, `steps` test ones."""
    return random_dataset(batch_size * (steps + 1), batch_size * steps)
