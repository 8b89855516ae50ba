"""Data-parallel training with PyTorch's own engine: DistributedDataParallel, one process per replica.

`torchrun` starts the processes (on one machine or several) and tells each its RANK, WORLD_SIZE and
LOCAL_RANK. Each process trains a replica on its shard of every global minibatch (alexnet_torch/data.py);
in backward, DDP all-reduces the gradients (nccl on GPUs, gloo on CPUs), so every replica takes the same
step. The first replica (rank 0) alone reads and writes the run directory and prints.
"""

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from alexnet_torch.model import alexnet, get_weights, set_weights
from common.batches import shard
from common.errors import UserError
from common.exchange import read_steps, steps_in_subprocess, write_replica
from common.hparams import HParams
from common.run import Run, diverged

# ---- Replicas ----


@dataclass(frozen=True)
class Replica:
    """This process's place among the replicas: its rank, their number, its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this replica writes the run and prints (rank 0)."""
        return self.rank == 0


def replicas(devices: int, device: torch.device) -> Replica:
    """Join torchrun's process group for `--devices N` (N > 1); for 1, this process alone on `device`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun: the processes on all machines
    command = f"torchrun {' '.join(_torchrun(devices))} --devices {devices}"
    if "WORLD_SIZE" not in os.environ and devices > 1:
        raise UserError(f"--devices {devices} needs one process per replica, started by torchrun: run "
                        f"`{command}` with your other flags (several machines: see README)")
    if devices != world:
        raise UserError(f"torchrun started {world} processes but --devices is {devices}: pass --devices {world}, "
                        f"or run `{command}` with your other flags")
    if world == 1:
        return Replica(0, 1, device)
    if device.type == "mps":
        raise UserError("--devices N: PyTorch's process groups cannot use Apple's MPS device: add --device cpu")
    if device.type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])  # this machine's GPU for this process
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"this machine has {torch.cuda.device_count()} GPU(s), fewer than the processes "
                            f"torchrun started on it: pass a smaller --nproc-per-node (and --devices to match)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")  # meets the others via torchrun's env
    return Replica(int(os.environ["RANK"]), world, device)


def replicas_name(replica: Replica, name: str) -> str:
    """The device name for the book's line, widened to the replicas: `cpu` becomes `cpu x2 (DDP)`."""
    return name if replica.world == 1 else f"{name} x{replica.world} (DDP)"


def wrap(net: nn.Module, replica: Replica) -> nn.Module:
    """The network under DistributedDataParallel, which first copies rank 0's weights to every replica."""
    if replica.world == 1:
        return net  # one device: the network itself
    return DistributedDataParallel(net, device_ids=[replica.device] if replica.device.type == "cuda" else None)


def unwrap(net: nn.Module) -> nn.Module:
    """The nn.Sequential inside DistributedDataParallel, torch.compile and --fast's Mixed (or `net` itself)."""
    while not isinstance(net, nn.Sequential):
        if isinstance(net, DistributedDataParallel):
            net = net.module
        elif hasattr(net, "_orig_mod"):  # torch.compile's OptimizedModule
            net = net._orig_mod
        else:  # alexnet_torch.train.Mixed
            net = net.net
    return net


def total(x: torch.Tensor, world: int) -> torch.Tensor:
    """`x` summed over the `world` replicas' shards, in place (an all-reduce); for one, `x` itself."""
    if world > 1:
        dist.all_reduce(x)
    return x


def train_batch(net: nn.Module, X: torch.Tensor, y: torch.Tensor, n: int,
                trainer: torch.optim.Optimizer) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on this replica's shard of a minibatch of `n`; the shard's summed loss and number correct."""
    trainer.zero_grad()
    y_hat = net(X)  # (about n / world, 10)
    l = F.cross_entropy(y_hat, y, reduction="sum")  # 0 on an empty shard, where a mean would be nan
    # DDP averages the replicas' gradients: each scaled by world / n, they average to the mean over all n.
    (l * dist.get_world_size() / n).backward()
    trainer.step()
    return l.detach(), (y_hat.detach().argmax(dim=1) == y).sum()


@dataclass
class Follower:
    """The run as the replicas other than rank 0 see it: its settings and epochs done; rank 0 writes it."""

    hparams: HParams
    start_epoch: int
    checkpoint = None  # rank 0 loads it; DDP copies its weights to the others

    def end_epoch(self, record: dict, write_checkpoint: Callable[[Path], None]) -> None:
        """Nothing to write or print (rank 0 does); stop with rank 0's Run when the loss is not finite."""
        if diverged(record):
            raise SystemExit(2)  # rank 0 says that the run diverged; the records are the same on every replica

    def interrupted(self, command: str | None = None) -> SystemExit:
        """Stop quietly: rank 0 says what was kept."""
        return SystemExit(130)


def shared_run(replica: Replica, hparams: HParams, make_run: Callable[[], Run]) -> Run | Follower:
    """The run on rank 0 (made by `make_run`); on the others, a Follower told how many epochs are done."""
    if replica.world == 1:
        return make_run()
    done = [None]  # the epochs rank 0's run has done; None if it could not open the run
    if replica.is_main:
        try:
            run = make_run()
            done = [run.start_epoch]
        finally:
            dist.broadcast_object_list(done)  # to the other replicas, even when make_run() fails
        return run
    dist.broadcast_object_list(done)
    if done[0] is None:
        raise SystemExit(2)  # rank 0 has said why
    return Follower(hparams, done[0])


def close(replica: Replica) -> None:
    """Leave the process group (nothing to do on one device)."""
    if replica.world > 1:
        dist.destroy_process_group()


# ---- Data-parallel steps ----


def data_parallel_steps(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, lr: float,
                        batch_size: int, devices: int) -> list[dict[str, np.ndarray]]:
    """SGD once over X, y in order on `devices` CPU replicas, dropout off; each replica's final weights."""
    if devices == 1:  # the one-device training step, in this process
        from alexnet_torch.train import sgd_step  # here, not at the top: train.py imports this module

        net = alexnet(X.shape[-1])
        set_weights(net, weights)
        for i in range(0, len(y), batch_size):
            sgd_step(net, X[i:i + batch_size], y[i:i + batch_size], lr, dropout=False)
        return [get_weights(net)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", *_torchrun(devices, "alexnet_torch.parallel")]
    return steps_in_subprocess(torchrun, weights, X, y, lr, batch_size, devices)  # a process per replica


def _worker(argv: list[str] | None = None) -> None:
    """One replica of data_parallel_steps, started by torchrun: files in, its final weights out."""
    args, weights, X, y = read_steps("python -m alexnet_torch.parallel", argv)
    replica = replicas(args.devices, torch.device("cpu"))
    net = alexnet(X.shape[-1])
    set_weights(net, weights)
    ddp = wrap(net, replica)
    ddp.eval()  # dropout off
    trainer = torch.optim.SGD(ddp.parameters(), lr=args.lr)
    for i in range(0, len(y), args.batch_size):  # global minibatches, the last possibly smaller
        batch = np.arange(i, min(i + args.batch_size, len(y)))
        idx = shard(batch, replica.rank, replica.world)  # this replica's share of the minibatch
        train_batch(ddp, torch.from_numpy(X[idx]), torch.from_numpy(y[idx]), len(batch), trainer)
    write_replica(args.dir, replica.rank, get_weights(net), X.shape[-1])
    close(replica)


# ---- Launch ----


def _torchrun(devices: int, module: str = "alexnet_torch.train") -> list[str]:
    """torchrun's arguments: `devices` processes on this machine, each running `module`."""
    return ["--standalone", "--nproc-per-node", str(devices), "-m", module]


def launch_command(devices: int) -> list[str]:
    """The command prefix that trains on `devices` replicas on this machine: torchrun, one process each."""
    if devices == 1:
        return [sys.executable, "-m", "alexnet_torch.train"]
    return [sys.executable, "-m", "torch.distributed.run", *_torchrun(devices)]  # torchrun's module


if __name__ == "__main__":
    _worker()
