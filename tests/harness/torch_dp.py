"""PyTorch's side of the data-parallel test: torchrun starts a process per replica; files in, files out."""

import sys

import numpy as np
import torch

from alexnet_torch.model import alexnet, get_weights, set_weights
from alexnet_torch.parallel import close, launch_command, make_step, replicas
from tests.harness.exchange import read_steps, steps_in_subprocess, write_replica


def data_parallel_steps(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, lr: float,
                        batch_size: int, devices: int,
                        processes: int = 2) -> tuple[list[dict[str, np.ndarray]], list[int]]:
    """SGD once over X, y in order on `devices` CPU replicas (one process each), dropout off; each replica's
    weights and count."""
    assert processes == devices, "torchrun starts one process per replica"
    return steps_in_subprocess(launch_command(devices, "tests.harness.torch_dp"), weights, X, y, lr, batch_size,
                               devices)


def _worker(argv: list[str] | None = None) -> None:
    """One replica, started by torchrun: the same replicas() and make_step() as a training run."""
    args, weights, X, y = read_steps("python -m tests.harness.torch_dp", argv)
    where = replicas(args.devices, "cpu")
    net = alexnet(X.shape[-1])
    set_weights(net, weights)
    net.eval()  # dropout off
    step = make_step(net, torch.optim.SGD(net.parameters(), lr=args.lr), where)
    for i in range(0, len(y), args.batch_size):  # global minibatches, the last possibly smaller
        batch = np.arange(i, min(i + args.batch_size, len(y)))
        idx = np.array_split(batch, where.processes)[where.rank]  # this replica's contiguous share
        step(torch.from_numpy(X[idx]), torch.from_numpy(y[idx]), len(batch))
    write_replica(args.dir, where.rank, get_weights(net), X.shape[-1], where.count)
    close(where)


if __name__ == "__main__":
    _worker(sys.argv[1:])
