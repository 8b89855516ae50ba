"""The book's own data path, as the reference the in-memory pipeline is measured against.

The book's PyTorch tab loads Fashion-MNIST through torchvision: a DataLoader with 4 workers
that resizes each 28x28 image on the CPU with PIL (bilinear) and turns it into a tensor.
This reproduces that path with PIL directly and times the same training steps over it:

    python -m alexnet_torch.bench_book [--steps N] [--device cpu|gpu]
"""

import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from alexnet_torch.model import alexnet
from alexnet_torch.train import device_name, get_device, train_step
from common.cli import bench_parser, run_cli
from common.metrics import append_json_line
from common.synthetic import bench_dataset

BACKEND = "torch"


class BookDataset(Dataset):
    """One image at a time: PIL bilinear resize on the CPU, then scaled to [0, 1] (like ToTensor)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, resize: int):
        self.images, self.labels, self.resize = images, labels, resize

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[i]).resize((self.resize, self.resize), Image.BILINEAR)
        X = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)  # (224, 224)
        return X.unsqueeze(0), int(self.labels[i])  # (1, 224, 224)


def time_book_path(net: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """Training images/s over the book's loader: wall clock, and with loader waits left out."""
    trainer = torch.optim.SGD(net.parameters(), lr=0.01)
    loss = nn.CrossEntropyLoss()
    net.train()
    batches = iter(loader)
    X, y = next(batches)
    train_step(net, X.to(device), y.to(device), loss, trainer)[0].item()  # warm-up
    start, steps_time, n = time.perf_counter(), 0.0, 0
    for X, y in batches:
        step_start = time.perf_counter()
        train_step(net, X.to(device), y.to(device), loss, trainer)[0].item()
        steps_time += time.perf_counter() - step_start
        n += len(y)
    return n / (time.perf_counter() - start), n / steps_time


def main(argv: list[str] | None = None) -> None:
    """Measure training images/s through the book's data path."""
    args = bench_parser(BACKEND).parse_args(argv)
    device = get_device(args.device)
    torch.manual_seed(0)
    net = alexnet(args.resize).to(device)
    data = bench_dataset(args.batch_size, args.steps)
    dataset = BookDataset(data.train_images, data.train_labels, args.resize)
    loader = DataLoader(dataset, args.batch_size, shuffle=True, num_workers=4,
                        pin_memory=device.type == "cuda", persistent_workers=True)
    wall, steps_only = time_book_path(net, loader, device)
    print(f"torch book data path on {device_name(device)}, batch {args.batch_size}, "
          f"{args.resize}x{args.resize}: training {wall:.1f} images/s wall clock, "
          f"{steps_only:.1f} images/s with loader waits left out (as the book times it)")
    if args.json:
        append_json_line(args.json, {"backend": "torch-book-loader", "device": device_name(device),
                                     "batch_size": args.batch_size, "resize": args.resize,
                                     "steps": args.steps, "train_images_per_sec": wall,
                                     "train_images_per_sec_steps_only": steps_only})


if __name__ == "__main__":
    run_cli(main)
