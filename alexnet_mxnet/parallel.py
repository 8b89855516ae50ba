"""Data-parallel training with Gluon's own engine: one process, the network on a list of contexts.

The book's multi-GPU recipe (d2l.ai, chapter 13.6): every parameter has a copy on each context, every
global minibatch is split into contiguous shards, one per context, and gluon.Trainer(kvstore='device')
sums the replicas' gradients and gives each replica the same update, so the copies stay identical.
On a CPU-only machine the replicas are CPU contexts cpu(0), cpu(1), ... Several machines would use
kvstore='dist_sync' and MXNet's launcher: documented in the README, not implemented here.
"""

import sys

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, npx
from mxnet.gluon import nn

from alexnet_mxnet.step import device_name, get_device, train_step
from common.batches import shard
from common.errors import UserError
from common.replicas import Replicas, Step

npx.set_np()

# ---- Replicas ----


def replicas(devices: int, device: str = "auto") -> Replicas:
    """The contexts to train on: `devices` GPUs, or `devices` CPU contexts when `--device` is the CPU."""
    here = get_device(device)
    contexts = _contexts_for(devices, here)
    return Replicas(device=contexts[0], name=_name(contexts), on_cpu=here.device_type == "cpu",
                    count=len(contexts), engine=contexts)


def _contexts_for(devices: int, device: mx.Context) -> list[mx.Context]:
    """`devices` GPUs, or `devices` CPU contexts when `device` is the CPU."""
    if device.device_type == "cpu":
        return [mx.cpu(i) for i in range(devices)]  # [mx.cpu()] for 1: the one-device run, unchanged
    found = mx.context.num_gpus()
    if devices > found:
        raise UserError(f"--devices {devices}: MXNet sees {found} GPU(s): pass --devices {found} or fewer, "
                        f"or --device cpu for CPU contexts")
    return [mx.gpu(i) for i in range(devices)]


def _name(contexts: list[mx.Context]) -> str:
    """The device name for the book's line, widened to the replicas: `cpu(0)` becomes `cpu(0)+cpu(1)`."""
    return "+".join(device_name(ctx) for ctx in contexts)  # the book's names, cpu(0) and gpu(0)


def replicate(net: nn.HybridSequential, replicas: Replicas) -> None:
    """Give every context a copy of the network's parameters (before making its Trainer)."""
    if replicas.count > 1:  # one device: nothing to copy
        net.collect_params().reset_ctx(replicas.engine)  # the weights drawn on the first context, copied: no new draws


def close(replicas: Replicas) -> None:
    """Nothing to leave: one process holds every replica."""


def _contexts(net: nn.HybridSequential) -> list[mx.Context]:
    """The contexts holding the network's replicas, in order."""
    return next(iter(net.collect_params().values())).list_ctx()  # every parameter lives on the same ones


# ---- Data-parallel step ----


def _split_batch(X: mx.np.ndarray, y: mx.np.ndarray,
                contexts: list[mx.Context]) -> list[tuple[mx.np.ndarray, mx.np.ndarray]]:
    """A global minibatch cut into each replica's contiguous shard (common.batches.shard), on its context."""
    shards = []
    for rank, ctx in enumerate(contexts):
        idx = shard(np.arange(len(y)), rank, len(contexts))
        if len(idx):  # a minibatch smaller than the number of replicas leaves some of them idle
            start, stop = int(idx[0]), int(idx[-1]) + 1
            shards.append((X[start:stop].as_in_ctx(ctx), y[start:stop].as_in_ctx(ctx)))  # copies
    return shards


def train_batch(net: nn.HybridSequential, X: mx.np.ndarray, y: mx.np.ndarray, loss: gluon.loss.Loss,
                trainer: gluon.Trainer) -> tuple[mx.np.ndarray, mx.np.ndarray]:
    """One data-parallel SGD step on a global minibatch; returns the summed loss and the number correct."""
    contexts = _contexts(net)
    shards = _split_batch(X, y, contexts)
    with autograd.record():  # train mode: dropout on
        y_hats = [net(X_i) for X_i, _ in shards]  # (B / devices, 10), each on its replica's context
        ls = [loss(y_hat, y_i) for y_hat, (_, y_i) in zip(y_hats, shards)]  # one loss per example
    for l in ls:
        l.backward()
    # MXNet cannot backpropagate an empty shard: a replica left idle by a minibatch smaller than the
    # number of replicas adds a zero gradient instead, marked fresh as backward() would mark it.
    for ctx in contexts[len(shards):]:  # the empty shards are the last ones
        for param in net.collect_params().values():
            param.grad(ctx)[:] = 0
            param.data(ctx)._fresh_grad = True  # else trainer.step() refuses or skips this replica
    # The kvstore sums the replicas' gradients and updates every copy alike; step() divides by the
    # GLOBAL batch size, so the update is the global minibatch's mean gradient, as on one device.
    trainer.step(len(y))
    l = sum(l_i.sum().as_in_ctx(X.ctx) for l_i in ls)  # added up over the replicas, on X's device
    correct = sum((y_hat.argmax(axis=1) == y_i).sum().as_in_ctx(X.ctx) for y_hat, (_, y_i) in zip(y_hats, shards))
    return l, correct


def make_step(net: nn.HybridSequential, trainer: gluon.Trainer, replicas: Replicas) -> Step:
    """The training step, chosen once: step(X, y, n) -> (summed loss, number correct)."""
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    if replicas.count == 1:
        return lambda X, y, n: train_step(net, X, y, loss, trainer)
    # X is the whole minibatch of n (one process drives every replica): train_batch shards it.
    return lambda X, y, n: train_batch(net, X, y, loss, trainer)


# ---- Launch ----


def launch_command(devices: int, module: str = "alexnet_mxnet.train") -> list[str]:
    """The command prefix that runs `module` on `devices` replicas here: one process, every context inside it."""
    return [sys.executable, "-m", module]
