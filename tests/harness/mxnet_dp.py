"""MXNet's side of the data-parallel test: one process drives every replica (here, in-process), or worker
processes started as MXNet's dist_sync roles (a scheduler, servers, workers) share them; files in, files out."""

import os
import sys

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import nn

from alexnet_mxnet.model import alexnet, get_weights, set_weights
from alexnet_mxnet.parallel import close, launch_command, make_step, replicas, replicate
from alexnet_mxnet.step import without_dropout
from tests.harness.exchange import read_steps, steps_in_subprocess, write_replica

OTHERS_START_ELSEWHERE = "MXNET_DP_OTHERS_START_ELSEWHERE"  # set: workers other than rank 0 start from other weights


def data_parallel_steps(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, lr: float, batch_size: int,
                        devices: int, processes: int = 1) -> tuple[list[dict[str, np.ndarray]], list[int]]:
    """SGD once over X, y in order on `devices` CPU replicas in `processes` processes, dropout off; each
    replica's weights and count."""
    if processes > 1:
        return steps_in_subprocess(launch_command(devices, "tests.harness.mxnet_dp", processes), weights, X, y, lr,
                                   batch_size, devices)
    where = replicas(devices, "cpu")  # the same replicas() and make_step() as a training run
    net, step = _network(weights, X.shape[-1], lr, where)
    for i in range(0, len(y), batch_size):  # global minibatches in order, the last possibly smaller
        X_batch = mx.np.array(X[i:i + batch_size], dtype=np.float32, ctx=where.device)  # (B, 1, H, W)
        y_batch = mx.np.array(y[i:i + batch_size], dtype=np.int64, ctx=where.device)  # (B,)
        step(X_batch, y_batch, len(y_batch))  # the whole minibatch: the step shards it over the replicas
    found = [_weights_on(net, ctx) for ctx in where.engine.contexts]
    close(where)
    return found, [where.count] * len(found)  # the replicas as the engine counts them


def _network(weights: dict[str, np.ndarray], resize: int, lr: float, where) -> tuple[nn.HybridSequential, object]:
    """The network from `weights` on the replicas' contexts, and its step (dropout off)."""
    net = alexnet(resize, where.device)
    set_weights(net, weights)
    replicate(net, where)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr}, kvstore=where.engine.kvstore,
                            update_on_kvstore=where.engine.update_on_kvstore)
    # Dropout off by leaving it out, trained in train mode: step.without_dropout says why not train_mode=False.
    return net, make_step(without_dropout(net), trainer, where)


def _weights_on(net: nn.HybridSequential, ctx: mx.Context) -> dict[str, np.ndarray]:
    """The canonical weights of the replica on `ctx`."""
    with ctx:  # on several contexts, Parameter.data() reads the current context's copy
        return get_weights(net)


def _worker(argv: list[str] | None = None) -> None:
    """One worker process, started as a dist_sync worker: the same replicas() and make_step() as a training run."""
    args, weights, X, y = read_steps("python -m tests.harness.mxnet_dp", argv)
    where = replicas(args.devices, "cpu")
    if where.rank and os.environ.get(OTHERS_START_ELSEWHERE):  # as after a resume: only rank 0 loaded the weights
        weights = {name: w * 2 + 1 for name, w in weights.items()}
    net, step = _network(weights, X.shape[-1], args.lr, where)
    for i in range(0, len(y), args.batch_size):  # global minibatches, the last possibly smaller
        batch = np.arange(i, min(i + args.batch_size, len(y)))
        idx = np.array_split(batch, where.processes)[where.rank]  # this worker's contiguous share
        step(mx.np.array(X[idx], dtype=np.float32, ctx=where.device),
             mx.np.array(y[idx], dtype=np.int64, ctx=where.device), len(batch))
    per = len(where.engine.contexts)
    for j, ctx in enumerate(where.engine.contexts):
        write_replica(args.dir, where.rank * per + j, _weights_on(net, ctx), X.shape[-1], where.count)
    close(where)


if __name__ == "__main__":
    _worker(sys.argv[1:])
