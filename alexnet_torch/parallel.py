"""Data-parallel training with PyTorch's own engine: DistributedDataParallel, one process per replica.

`torchrun` starts the processes (on one machine or several) and tells each its RANK, WORLD_SIZE and
LOCAL_RANK. Each process trains a replica on its shard of every global minibatch (alexnet_torch/data.py);
in backward, DDP all-reduces the gradients (nccl on GPUs, gloo on CPUs), so every replica takes the same
step. The first replica (rank 0) alone reads and writes the run directory and prints.
"""

import os
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from alexnet_torch.step import accuracy, device_name, get_device, on_cpu, train_step
from common import launch
from common.errors import UserError
from common.replicas import Replicas, Step

BACKEND = "torch"

# ---- Replicas ----


def replicas(devices: int, device: str = "auto") -> Replicas:
    """Join torchrun's process group for `--devices N` (N > 1); for 1, this process alone on `--device`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun: the processes on all machines
    command = " ".join([*launch.prefix(BACKEND, devices, devices, "alexnet_torch.train"), "--devices", str(devices)])
    if "WORLD_SIZE" not in os.environ and devices > 1:
        raise UserError(f"--devices {devices} needs one process per replica, started by torchrun: run "
                        f"`{command}` with your other flags (several machines: see README)")
    if devices != world:
        raise UserError(f"torchrun started {world} processes but --devices is {devices}: pass --devices {world}, "
                        f"or run `{command}` with your other flags")
    here = get_device(device)
    if world == 1:
        return Replicas(here, device_name(here), on_cpu=on_cpu(here))
    if here.type == "mps":
        raise UserError("--devices N: PyTorch's process groups cannot use Apple's MPS device: add --device cpu")
    if here.type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])  # this machine's GPU for this process
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"this machine has {torch.cuda.device_count()} GPU(s), fewer than the processes "
                            f"torchrun started on it: pass a smaller --nproc-per-node (and --devices to match)")
        here = torch.device("cuda", local_rank)
        torch.cuda.set_device(here)
    dist.init_process_group("nccl" if here.type == "cuda" else "gloo")  # meets the others via torchrun's env
    count = dist.get_world_size()  # as the process group counts them
    return Replicas(here, f"{device_name(here)} x{count} (DDP)", on_cpu=on_cpu(here), count=count,
                    rank=dist.get_rank(), processes=count, broadcast=_broadcast,
                    agree=lambda flag: _agree(flag, here), meet=lambda: _meet(here))


def close(replicas: Replicas) -> None:
    """Leave the process group (nothing to do on one device)."""
    if replicas.processes > 1:
        dist.destroy_process_group()


# ---- Across processes ----


def _broadcast(value: object) -> object:
    """Rank 0's `value`, on every process."""
    box = [value]
    dist.broadcast_object_list(box)
    return box[0]


def _agree(flag: bool, device: torch.device) -> bool:
    """Whether any process says True (all processes stop, or checkpoint, at the same minibatch)."""
    x = torch.tensor(int(flag), device=device)
    dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return bool(x.item())


def _meet(device: torch.device) -> None:
    """Wait until every process is here (a barrier), so that a finished run's processes leave together.

    A process that left while gloo's worker threads still held its last collective's tensors could abort
    at exit ("terminate called without an active exception", seen with torch 2.14.1): a worker freeing a
    tensor made in Python needs the GIL, which a finalizing interpreter no longer gives. By this barrier,
    after rank 0's evaluation, they are long freed, and the barrier's own tensor is made in C++.
    """
    dist.barrier(device_ids=[device.index] if device.type == "cuda" else None)


# ---- Data-parallel step ----


def train_batch(net: nn.Module, X: torch.Tensor, y: torch.Tensor, n: int,
                trainer: torch.optim.Optimizer) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on this replica's shard of a minibatch of `n`; the shard's summed loss and number correct."""
    trainer.zero_grad()
    y_hat = net(X)  # (about n / world, 10)
    l = F.cross_entropy(y_hat, y, reduction="sum")  # 0 on an empty shard, where a mean would be nan
    # DDP averages the replicas' gradients: each scaled by world / n, they average to the mean over all n.
    (l * dist.get_world_size() / n).backward()
    trainer.step()
    return l.detach(), accuracy(y_hat.detach(), y)


def make_step(net: nn.Module, trainer: torch.optim.Optimizer, replicas: Replicas) -> Step:
    """The training step, chosen once: step(X, y, n) -> (summed loss, number correct)."""
    if replicas.count == 1:
        loss = nn.CrossEntropyLoss()
        return lambda X, y, n: train_step(net, X, y, loss, trainer)
    # DDP first copies rank 0's weights (a checkpoint loaded there too) to every replica.
    ddp = DistributedDataParallel(net, device_ids=[replicas.device] if replicas.device.type == "cuda" else None)
    return lambda X, y, n: train_batch(ddp, X, y, n, trainer)


# ---- Launch ----


def launch_command(devices: int, module: str = "alexnet_torch.train", processes: int | None = None) -> list[str]:
    """The command prefix that runs `module` on `devices` replicas on this machine: torchrun, one process each."""
    return launch.prefix(BACKEND, devices, processes or devices, module, python=sys.executable)
