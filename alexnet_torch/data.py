"""Fashion-MNIST for PyTorch: held on the device as uint8, resized per minibatch there."""

from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F

from common.batches import Minibatches, shard
from common.fashion_mnist import FashionMNIST

# ---- Resizing on the device ----


def resize_batch(X: torch.Tensor, resize: int) -> torch.Tensor:
    """uint8 images (B, 28, 28) to float32 (B, 1, resize, resize) in [0, 1], bilinear."""
    X = X.unsqueeze(1).float() / 255  # (B, 1, 28, 28)
    return F.interpolate(X, size=(resize, resize), mode="bilinear", align_corners=False)  # (B, 1, 224, 224)


def preprocess(images: np.ndarray, resize: int, device: torch.device) -> np.ndarray:
    """uint8 images (B, 28, 28) to the network's float32 input (B, 1, resize, resize), as NumPy."""
    return resize_batch(torch.from_numpy(images).to(device), resize).cpu().numpy()


# ---- Minibatches ----


class DataIter(Minibatches):
    """Minibatches (X, y) of one split on the device, in a new order each epoch from the seed.

    With `world` replicas (--devices N), replica `rank` gets only its shard of every minibatch.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, resize: int,
                 device: torch.device, shuffle: bool, seed: int, rank: int = 0, world: int = 1):
        super().__init__(len(labels), batch_size, shuffle, seed)
        self.images = torch.from_numpy(images).to(device)  # (N, 28, 28) uint8, 47 MB for all of train
        self.labels = torch.from_numpy(labels).to(device)  # (N,) int64
        self.resize, self.device = resize, device
        self.rank, self.world = rank, world

    def total(self, x: torch.Tensor) -> torch.Tensor:
        """`x` summed over the replicas' shards, in place (an all-reduce); on one device, `x` itself."""
        if self.world > 1:
            dist.all_reduce(x)
        return x

    def shards(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """This replica's (X, y) of each minibatch, with the minibatch's size (one device: all of it)."""
        order = self.order()
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        mine = [shard(batch, self.rank, self.world) for batch in batches]  # contiguous slices
        idx = torch.from_numpy(np.concatenate(mine)).to(self.device)  # one copy to the device per pass
        for batch, idx_i in zip(batches, torch.split(idx, [len(m) for m in mine])):
            yield resize_batch(self.images[idx_i], self.resize), self.labels[idx_i], len(batch)


# ---- Loading ----


def load_data_fashion_mnist(data: FashionMNIST, batch_size: int, resize: int, device: torch.device,
                            seed: int = 0, rank: int = 0, world: int = 1) -> tuple[DataIter, DataIter]:
    """The training iterator (shuffled per epoch) and the test iterator (in order); replica `rank`'s shards."""
    train_iter = DataIter(data.train_images, data.train_labels, batch_size, resize, device, True, seed, rank, world)
    test_iter = DataIter(data.test_images, data.test_labels, batch_size, resize, device, False, seed, rank, world)
    return train_iter, test_iter
