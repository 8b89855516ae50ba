"""Train the book's AlexNet on Fashion-MNIST with PyTorch: `python -m alexnet_torch.train --help`."""

import copy
import pickle
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet_torch.data import DataIter, load_data_fashion_mnist
from alexnet_torch.model import alexnet, get_weights
from alexnet_torch.parallel import close, replicas, replicas_name, shared_run, total, train_batch, unwrap, wrap
from common import fashion_mnist
from common.batches import epoch_seed
from common.cli import hparams_from_args, parse_args, run_cli
from common.errors import UserError
from common.metrics import epoch_record, estimate, estimate_line, long_run, memory_record, progress, versions
from common.run import Run
from common.spec import num_params
from common.weights import save_weights

BACKEND = "torch"
CKPT_EXT = "pt"

# ---- Device ----


def get_device(name: str) -> torch.device:
    """`auto`: a GPU if there is one, else the CPU; `gpu`: a GPU or a clear error."""
    if name in ("auto", "gpu"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
    if name == "gpu":
        raise UserError("--device gpu: PyTorch sees no GPU (no CUDA or MPS device): use --device cpu, "
                        "or install a CUDA build of PyTorch on a machine with a GPU")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """The device as the book prints it, with the GPU's model where there is one."""
    if device.type == "cuda":
        return f"cuda:0 ({torch.cuda.get_device_name(device)})"
    return str(device)


def peak_memory(device: torch.device) -> dict:
    """Peak memory so far: the CUDA allocator's high-water mark, or this process's on the CPU."""
    if device.type == "cuda":
        return memory_record(torch.cuda.max_memory_allocated(device) / 2**20, "CUDA max_memory_allocated")
    return memory_record()  # this process's peak RSS


# ---- Fast path (opt-in) ----


class Mixed(nn.Module):
    """The network in bfloat16 autocast on channels-last input; float32 logits for the loss."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = X.contiguous(memory_format=torch.channels_last)  # (B, 1, H, W), stored as (B, H, W, 1)
        with torch.autocast(X.device.type, dtype=torch.bfloat16):  # matmuls and convs in bf16
            return self.net(X).float()  # (B, 10)


def fast_path(net: nn.Module, device: torch.device, compile: bool | None = None) -> nn.Module:
    """--fast: the same parameters run in bf16 and channels-last, compiled by torch.compile on CUDA.

    On the 2-core CI CPU bf16 and channels-last doubled training speed, and torch.compile then took
    it down by 15% (docs/results.md), so the CPU is not compiled unless `compile` says so.
    """
    net.to(memory_format=torch.channels_last)  # in place: the optimizer's parameters stay the same
    fast = Mixed(net)
    if device.type == "cuda" if compile is None else compile:
        fast = torch.compile(fast, dynamic=False)  # one graph per batch shape (the last batch is smaller)
    return fast


# ---- Evaluation ----


def accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The number of correct predictions, as a tensor (no sync with the device)."""
    return (y_hat.argmax(dim=1) == y).sum()


def evaluate_accuracy(net: nn.Module, data_iter: DataIter) -> float:
    """Accuracy of `net` on a whole split, dropout off."""
    net.eval()
    correct = torch.zeros((), device=data_iter.device)
    with torch.no_grad():
        for X, y in data_iter:  # --devices N: this replica's shard of each minibatch
            correct += accuracy(net(X), y)
    return total(correct, data_iter.world).item() / data_iter.num_examples  # over all the shards


# ---- One training step ----


def train_step(net: nn.Module, X: torch.Tensor, y: torch.Tensor, loss: nn.Module,
               trainer: torch.optim.Optimizer) -> tuple[torch.Tensor, torch.Tensor]:
    """One minibatch SGD step; returns the summed loss and the number correct."""
    trainer.zero_grad()
    y_hat = net(X)  # (B, 10)
    l = loss(y_hat, y)
    l.backward()
    trainer.step()
    return l.detach() * X.shape[0], accuracy(y_hat.detach(), y)


def sgd_step(net: nn.Module, X: np.ndarray, y: np.ndarray, lr: float, dropout: bool = True) -> float:
    """One SGD step on NumPy data; returns the mean loss before the step (tests and parity)."""
    device = next(net.parameters()).device
    net.train(dropout)
    trainer = torch.optim.SGD(net.parameters(), lr=lr)
    X, y = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    l, _ = train_step(net, X, y, nn.CrossEntropyLoss(), trainer)
    return l.item() / len(y)


# ---- The training loop ----


def train_epoch(net: nn.Module, train_iter: DataIter, loss: nn.Module,
                trainer: torch.optim.Optimizer, bar) -> tuple[float, float, float]:
    """One pass over the training data: mean loss, accuracy and seconds."""
    net.train()
    metric = torch.zeros(2, device=train_iter.device)  # summed loss, number correct
    start = time.perf_counter()
    for X, y, size in train_iter.shards():  # --devices N: X, y are this replica's shard of a minibatch of size
        if train_iter.world == 1:
            l, correct = train_step(net, X, y, loss, trainer)
        else:  # DDP averages the replicas' gradients (alexnet_torch/parallel.py)
            l, correct = train_batch(net, X, y, size, trainer)
        metric += torch.stack([l, correct.float()])
        bar.update(size)
    train_l, train_correct = total(metric, train_iter.world).tolist()  # all shards; waits for the device
    n = train_iter.num_examples
    return train_l / n, train_correct / n, time.perf_counter() - start


def train(net: nn.Module, train_iter: DataIter, test_iter: DataIter, run: Run,
          trainer: torch.optim.Optimizer, no_progress: bool = False) -> None:
    """Train for the run's remaining epochs, checkpointing after each."""
    loss = nn.CrossEntropyLoss()
    hp = run.hparams
    for epoch in range(run.start_epoch + 1, hp.num_epochs + 1):
        torch.manual_seed(epoch_seed(hp.seed, epoch) + train_iter.rank)  # dropout: repeatable, per replica
        train_iter.set_epoch(epoch)
        start = time.perf_counter()
        with progress(train_iter.num_examples, epoch, hp.num_epochs, no_progress) as bar:
            train_l, train_acc, train_time = train_epoch(net, train_iter, loss, trainer, bar)
        test_acc = evaluate_accuracy(net, test_iter)
        record = epoch_record(epoch, train_l, train_acc, test_acc, train_iter.num_examples,
                              train_time, time.perf_counter() - start)
        run.end_epoch(record, lambda path, epoch=epoch: save_checkpoint(path, net, trainer, epoch))


# ---- Checkpoints ----


def save_checkpoint(path: Path, net: nn.Module, trainer: torch.optim.Optimizer, epoch: int) -> None:
    """Write the network and optimizer state (the run directory makes it atomic)."""
    net = unwrap(net)  # not DDP's or --fast's wrappers: one checkpoint format for any flags
    torch.save({"net": net.state_dict(), "trainer": trainer.state_dict(), "epoch": epoch}, path)


def load_checkpoint(path: Path, net: nn.Module, trainer: torch.optim.Optimizer) -> int:
    """Restore a checkpoint safely (tensors only, nothing unpickled) and return its epoch."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        unwrap(net).load_state_dict(state["net"])
        trainer.load_state_dict(state["trainer"])
    except pickle.UnpicklingError:
        raise UserError(f"cannot load checkpoint {path}: it holds more than tensors, and loading it "
                        f"could run code (refused); start a new run with --force") from None
    except (OSError, RuntimeError, KeyError, EOFError) as e:
        raise UserError(f"cannot load checkpoint {path} ({str(e).splitlines()[0]}): "
                        f"start a new run with --force") from None
    return state["epoch"]


# ---- Time estimate ----


def probe_speed(net: nn.Module, resize: int, batch_size: int, device: torch.device) -> float:
    """Training images/s, timed on a copy of the network with one random minibatch."""
    probe = copy.deepcopy(net).train()
    trainer = torch.optim.SGD(probe.parameters(), lr=0.0)
    X = torch.rand(batch_size, 1, resize, resize, device=device)
    y = torch.zeros(batch_size, dtype=torch.long, device=device)
    train_step(probe, X, y, nn.CrossEntropyLoss(), trainer)  # warm-up
    start = time.perf_counter()
    train_step(probe, X, y, nn.CrossEntropyLoss(), trainer)[0].item()
    return batch_size / (time.perf_counter() - start)


# ---- Main ----


def main(argv: list[str] | None = None) -> None:
    """Train with the book's settings (or the flags'), print the book's line, write the run."""
    args = parse_args(BACKEND, argv)
    hp = hparams_from_args(args)
    replica = replicas(args.devices, get_device(args.device))  # --devices N: this process's replica
    device, name = replica.device, replicas_name(replica, device_name(replica.device))
    data = fashion_mnist.load(args.data_dir, hp.train_limit, hp.test_limit)
    # Only rank 0 reads and writes the run; the others only learn how many epochs are done.
    run = shared_run(replica, hp, lambda: Run(args.out, BACKEND, hp, CKPT_EXT, resume=args.resume, force=args.force))
    if replica.is_main:
        print(fashion_mnist.describe(data))
        print(f"training on {name}, writing to {run.out}")
    torch.manual_seed(hp.seed)
    net = alexnet(hp.resize).to(device)
    if hp.fast:
        net = fast_path(net, device)  # a wrapper around the same parameters
    trainer = torch.optim.SGD(net.parameters(), lr=hp.lr)
    if run.checkpoint:  # rank 0 only: wrap() copies its weights to the others; SGD keeps no state to copy
        load_checkpoint(run.checkpoint, net, trainer)
        print(f"resuming after epoch {run.start_epoch}")
    epochs_left = hp.num_epochs - run.start_epoch
    if replica.is_main and device.type == "cpu" and long_run(hp, len(data.train_labels), epochs_left):
        speed = probe_speed(net, hp.resize, hp.batch_size, device)
        seconds = estimate(speed, len(data.train_labels), len(data.test_labels), epochs_left)
        print(estimate_line(seconds, speed, "this CPU", epochs_left))
    train_iter, test_iter = load_data_fashion_mnist(data, hp.batch_size, hp.resize, device, hp.seed,
                                                    replica.rank, replica.world)
    try:
        train(wrap(net, replica), train_iter, test_iter, run, trainer, args.no_progress or not replica.is_main)
    except KeyboardInterrupt:
        command = "the same torchrun command, plus" if replica.world > 1 else None  # as it was launched
        raise run.interrupted(command) from None
    if replica.is_main:  # every replica holds the same weights
        save_weights(run.weights_path, get_weights(unwrap(net)), hp.resize, BACKEND)
        extra = {"versions": versions("torch", torch.__version__), "params": num_params(hp.resize),
                 "data": fashion_mnist.describe(data), "devices": args.devices, "memory": peak_memory(device)}
        print(run.finish(name, extra))
    close(replica)


if __name__ == "__main__":
    run_cli(main)
