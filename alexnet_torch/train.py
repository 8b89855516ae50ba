"""Train the book's AlexNet on Fashion-MNIST with PyTorch: `python -m alexnet_torch.train --help`."""

import pickle
from pathlib import Path

import torch
from torch import nn

from alexnet_torch.data import DataIter, load_data_fashion_mnist, preprocess
from alexnet_torch.model import alexnet, get_weights, predict, set_weights
from alexnet_torch.parallel import close, make_step, replicas
from alexnet_torch.step import evaluate_accuracy, fast_path, peak_memory, train_step, unwrap
from common import training
from common.epoch import Epoch, Loop
from common.errors import UserError, run_cli
from common.fashion_mnist import FashionMNIST
from common.hparams import HParams
from common.metrics import fastest, versions
from common.replicas import Replicas, Step

BACKEND = "torch"
CKPT_EXT = "pt"

# ---- The network and its trainer ----


def build(hp: HParams, replicas: Replicas) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The network, seeded, on this process's device (--fast: its fast path), and its SGD trainer."""
    torch.manual_seed(hp.seed)
    net = alexnet(hp.resize).to(replicas.device)
    if hp.fast:
        net = fast_path(net, replicas.device)  # a wrapper around the same parameters
    return net, torch.optim.SGD(net.parameters(), lr=hp.lr)


def load_data(data: FashionMNIST, hp: HParams, replicas: Replicas) -> tuple[DataIter, DataIter]:
    """The run's iterators on the device: this process's shard of every minibatch."""
    return load_data_fashion_mnist(data, hp.batch_size, hp.resize, replicas.device, hp.seed,
                                   replicas.rank, replicas.processes)


# ---- The training loop ----


def train_epoch(net: nn.Module, step: Step, train_iter: DataIter, epoch: Epoch) -> tuple[float, float, float]:
    """One pass over the training data (the rest of it, after a stop): mean loss, accuracy and seconds."""
    net.train()
    metric = torch.tensor(epoch.sums, device=train_iter.device)  # summed loss, number correct (so far)

    def read() -> list[float]:  # the sums so far over all shards; waits for the device
        return train_iter.total(metric.clone()).tolist()

    for i, (X, y, n) in epoch.minibatches(train_iter.shards()):  # --devices N: this process's shard of n
        torch.manual_seed(epoch.seed(i) + train_iter.rank)  # dropout: the same masks on resume, per replica
        l, correct = step(X, y, n)
        metric += torch.stack([l, correct.float()])
        epoch.done(i, n, read)  # the bar, a curve point now and then, a checkpoint when stopped
    return epoch.means(read())


def train(net: nn.Module, trainer: torch.optim.Optimizer, step: Step, train_iter: DataIter,
          test_iter: DataIter, loop: Loop) -> None:
    """Train for the run's remaining epochs, checkpointing after each (and where a stop lands)."""
    for epoch in loop.epochs(train_iter, lambda path, e: save_checkpoint(path, net, trainer, e)):
        train_iter.set_epoch(epoch.number, epoch.start_batch)  # this epoch's order, from where it stopped
        train_l, train_acc, train_time = train_epoch(net, step, train_iter, epoch)
        test_acc = evaluate_accuracy(net, test_iter)
        epoch.end(train_l, train_acc, train_time, test_acc)


# ---- Checkpoints ----


def save_checkpoint(path: Path, net: nn.Module, trainer: torch.optim.Optimizer, epoch: int) -> None:
    """Write the network and optimizer state (the run directory makes it atomic)."""
    net = unwrap(net)  # not --fast's wrappers: one checkpoint format for any flags
    torch.save({"net": net.state_dict(), "trainer": trainer.state_dict(), "epoch": epoch}, path)


def load_checkpoint(path: Path, net: nn.Module, trainer: torch.optim.Optimizer) -> int:
    """Restore a checkpoint safely (tensors only, nothing unpickled) and return its epoch."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        unwrap(net).load_state_dict(state["net"])
        trainer.load_state_dict(state["trainer"])
    except pickle.UnpicklingError:
        raise UserError(f"cannot load checkpoint {path}: it holds more than tensors, and loading it "
                        f"could run code (refused)") from None
    except (OSError, RuntimeError, KeyError, EOFError) as e:
        raise UserError(f"cannot load checkpoint {path} ({str(e).splitlines()[0]})") from None
    return state["epoch"]


# ---- Time estimate ----


def probe_speed(hp: HParams, replicas: Replicas) -> float:
    """Training images/s of the run's own step (--fast included): the faster of two minibatches, on a fresh network."""
    net, trainer = build(hp, replicas)
    X = torch.rand(hp.batch_size, 1, hp.resize, hp.resize, device=replicas.device)
    y = torch.zeros(hp.batch_size, dtype=torch.long, device=replicas.device)
    net.train()

    def one_step() -> None:
        train_step(net, X, y, nn.CrossEntropyLoss(), trainer)[0].item()  # waits for the device

    return hp.batch_size / fastest(one_step, repeats=2)  # after a warm-up step


# ---- Main ----


def describe(replicas: Replicas) -> dict:
    """What summary.json records about the framework: versions and peak memory."""
    return {"versions": versions("torch", torch.__version__), "memory": peak_memory(replicas.device)}


HOOKS = training.Hooks(BACKEND, CKPT_EXT, replicas, build, load_data, make_step, train, load_checkpoint,
                       probe_speed, lambda net: get_weights(unwrap(net)),
                       lambda net, weights: set_weights(unwrap(net), weights), preprocess,
                       lambda net, X: predict(unwrap(net), X), describe, close)


def main(argv: list[str] | None = None) -> None:
    """Train with the book's settings (or the flags'), print the book's line, write the run."""
    training.main(HOOKS, argv)


if __name__ == "__main__":
    run_cli(main)
