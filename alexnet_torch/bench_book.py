"""The book's own data path, as the reference the in-memory pipeline is measured against.

The book's PyTorch tab loads Fashion-MNIST through torchvision: a DataLoader with 4 workers
that resizes each 28x28 image on the CPU with PIL (bilinear) and turns it into a tensor.
This reproduces that path with PIL directly and times the same training steps over it:

    python -m alexnet_torch.bench_book [--steps N] [--device cpu|gpu]   # images/s, random data
    python -m alexnet_torch.bench_book --epochs 10 [--train-limit N]    # the book's whole run, timed
"""

import argparse
import time
import warnings

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from alexnet_torch.model import alexnet
from alexnet_torch.step import accuracy, device_name, get_device, on_cpu, train_step
from common import fashion_mnist
from common.cli import bench_parser
from common.errors import path_arg, positive_float, positive_int, run_cli
from common.hparams import BOOK
from common.memory import check_memory
from common.metrics import append_json_line, epoch_line
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


def book_loader(images: np.ndarray, labels: np.ndarray, resize: int, batch_size: int, shuffle: bool,
                device: torch.device) -> DataLoader:
    """The book's loader: 4 worker processes, each resizing one image at a time."""
    # The book's 4 workers on purpose, on any machine: PyTorch's warning about fewer cores says nothing new.
    warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
    return DataLoader(BookDataset(images, labels, resize), batch_size, shuffle=shuffle, num_workers=4,
                      pin_memory=device.type == "cuda", persistent_workers=True)


def time_book_path(net: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """Training images/s over the book's loader: wall clock, and with loader waits left out."""
    trainer = torch.optim.SGD(net.parameters(), lr=BOOK.lr)
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


def evaluate_book(net: nn.Module, loader: DataLoader, device: torch.device) -> float:
    """Test accuracy through the book's loader, dropout off."""
    net.eval()
    correct = torch.zeros((), device=device)
    with torch.no_grad():
        for X, y in loader:
            correct += accuracy(net(X.to(device)), y.to(device))
    return correct.item() / len(loader.dataset)


def book_run(net: nn.Module, data: fashion_mnist.FashionMNIST, args: argparse.Namespace,
             device: torch.device) -> dict:
    """The book's whole run through its loader: each epoch's training and test pass, timed end to end."""
    train_loader = book_loader(data.train_images, data.train_labels, args.resize, args.batch_size, True, device)
    test_loader = book_loader(data.test_images, data.test_labels, args.resize, args.batch_size, False, device)
    trainer, loss = torch.optim.SGD(net.parameters(), lr=args.lr), nn.CrossEntropyLoss()
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        net.train()
        metric, epoch_start = torch.zeros(2, device=device), time.perf_counter()  # summed loss, number correct
        for X, y in train_loader:
            l, correct = train_step(net, X.to(device), y.to(device), loss, trainer)
            metric += torch.stack([l, correct.float()])
        train_l, train_correct = metric.tolist()  # waits for the device
        train_time, n = time.perf_counter() - epoch_start, len(data.train_labels)
        record = {"epoch": epoch, "loss": train_l / n, "train_acc": train_correct / n,
                  "test_acc": evaluate_book(net, test_loader, device), "examples_per_sec": n / train_time,
                  "epoch_time": time.perf_counter() - epoch_start}
        print(epoch_line(record, args.epochs), flush=True)
    return {**record, "wall_time": time.perf_counter() - start}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The bench flags, plus the flags of a whole run (--epochs and the data's)."""
    p = bench_parser(BACKEND, book_path=True)
    p.prog, p.description = "python -m alexnet_torch.bench_book", __doc__.splitlines()[0]
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="train this many epochs on the real Fashion-MNIST and time the whole run "
                        "(default: time --steps steps on random data)")
    p.add_argument("--lr", type=positive_float, default=BOOK.lr, help="SGD learning rate (with --epochs)")
    p.add_argument("--data-dir", type=path_arg, default=None, help="the four IDX files (with --epochs)")
    p.add_argument("--train-limit", type=positive_int, default=None, help="the first N training images")
    p.add_argument("--test-limit", type=positive_int, default=None, help="the first N test images")
    args = p.parse_args(argv)
    run_only = [flag for flag, value, default in [("--lr", args.lr, BOOK.lr), ("--data-dir", args.data_dir, None),
                ("--train-limit", args.train_limit, None), ("--test-limit", args.test_limit, None)] if value != default]
    if run_only and not args.epochs:
        p.error(f"{', '.join(run_only)} shape a whole run: add --epochs N (without it, --steps steps on random "
                f"data are timed)")
    return args


def main(argv: list[str] | None = None) -> None:
    """Measure training images/s through the book's data path, or time the book's whole run."""
    args = parse_args(argv)
    device = get_device(args.device)
    check_memory(args.resize, args.batch_size, "float32", on_cpu(device))
    torch.manual_seed(BOOK.seed)  # the same initial weights as python -m alexnet_torch.train
    net = alexnet(args.resize).to(device)
    if args.epochs:
        data = fashion_mnist.load(args.data_dir, args.train_limit, args.test_limit)
        result = book_run(net, data, args, device)
        print(f"the book's data path on {device_name(device)}: {args.epochs} epochs in {result['wall_time']:.1f}s, "
              f"test acc {result['test_acc']:.3f}")
        if args.json:
            append_json_line(args.json, {"backend": "torch-book-loader", "device": device_name(device),
                                         "batch_size": args.batch_size, "resize": args.resize, **result})
        return
    data = bench_dataset(args.batch_size, args.steps)
    loader = book_loader(data.train_images, data.train_labels, args.resize, args.batch_size, True, device)
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
