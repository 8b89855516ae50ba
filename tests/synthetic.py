"""Tiny generated Fashion-MNIST look-alikes: IDX files that tests write themselves."""

from pathlib import Path

import numpy as np

from common.fashion_mnist import FILES, write_idx


def make_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is the position of a bright block on noise: learnable, not by chance."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for image, k in zip(images, labels):
        row, col = divmod(int(k), 5)
        image[4 + 12 * row:12 + 12 * row, 1 + 5 * col:6 + 5 * col] = 255
    return images, labels


def write_dataset(directory: Path, n_train: int = 256, n_test: int = 64, gz: bool = False,
                  seed: int = 0) -> Path:
    """Write the four IDX files (raw or .gz) into `directory` and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    train, test = make_split(n_train, seed), make_split(n_test, seed + 1)
    arrays = {"train_images": train[0], "train_labels": train[1],
              "test_images": test[0], "test_labels": test[1]}
    for key, f in FILES.items():
        write_idx(directory / (f.name + (".gz" if gz else "")), arrays[key])
    return directory
