"""Data-parallel training with Gluon's own engine: the network on a list of contexts, in one process or several.

The book's multi-GPU recipe (d2l.ai, chapter 13.6): every parameter has a copy on each context, every
global minibatch is split into contiguous shards, one per context, and gluon.Trainer(kvstore='device')
sums the replicas' gradients and gives each replica the same update, so the copies stay identical.
On a CPU-only machine the replicas are CPU contexts cpu(0), cpu(1), ...

Across processes (several machines, or several processes on one) MXNet uses its parameter server,
kvstore='dist_sync': a scheduler, servers and workers, each told its role by DMLC_* variables. Each worker
trains on its share of every global minibatch on its own contexts; the servers sum the workers' gradients
and every worker takes the same step, from rank 0's weights (a checkpoint rank 0 loaded), copied before the
first. `python -m common.launch --backend mxnet --processes N -- python -m alexnet_mxnet.train ...` starts
them all on this machine (MXNet's own tools/launch.py no longer runs on Python 3.9+: it calls Thread.isAlive).
Every wait on the other processes is bounded by ALEXNET_CONNECT_TIMEOUT: a worker left alone stops with one line.
"""

import atexit
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from itertools import count

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, npx
from mxnet.base import _LIB, check_call
from mxnet.gluon import nn

from alexnet_mxnet.step import device_name, get_device, on_cpu, train_step
from common import launch
from common.batches import shard
from common.errors import UserError
from common.replicas import Replicas, Step, broadcast_json

npx.set_np()

BACKEND = "mxnet"
_DMLC = ("DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_WORKER", "DMLC_NUM_SERVER")  # what every role reads

# ---- Replicas ----


@dataclass(frozen=True)
class _Engine:
    """What Gluon trains the replicas with: this process's contexts and the kvstore that sums their gradients."""

    contexts: list[mx.Context]
    kvstore: str | mx.kv.KVStore = "device"  # 'device' in one process; the dist_sync store across processes
    update_on_kvstore: bool | None = None  # across processes every worker updates its own copy (False)
    total: Callable[[mx.np.ndarray], mx.np.ndarray] = field(default=lambda x: x, repr=False)  # summed over processes

    def alone(self) -> "_Engine":
        """This process's contexts by themselves (each worker times its step alone: train.probe_speed)."""
        return _Engine(self.contexts)


def replicas(devices: int, device: str = "auto") -> Replicas:
    """The contexts to train on: `devices` GPUs or CPU contexts, shared among the workers when started as one."""
    here = get_device(device)
    if os.environ.get("DMLC_ROLE") != "worker":  # one process drives every replica
        contexts = _contexts_for(devices, here)
        return Replicas(device=contexts[0], name=_name(contexts), on_cpu=on_cpu(here), count=len(contexts),
                        engine=_Engine(contexts))
    kv = _join()
    workers = kv.num_workers  # as the kvstore reports them
    if devices % workers:
        raise UserError(f"--devices {devices} cannot be shared by {workers} worker processes: pass a multiple "
                        f"of {workers} (each worker trains --devices / {workers} replicas)")
    contexts = _contexts_for(devices // workers, here, int(os.environ.get("DMLC_TASK_ID", "0")))
    engine = _Engine(contexts, kv, update_on_kvstore=False, total=partial(_total, kv))
    return Replicas(device=contexts[0], name=f"{_name(contexts)} x{workers} (dist_sync)", on_cpu=on_cpu(here),
                    count=len(contexts) * workers, rank=kv.rank, processes=workers, engine=engine,
                    broadcast=partial(_broadcast, kv), agree=partial(_agree, kv), meet=partial(_meet, kv))


def _contexts_for(devices: int, device: mx.Context, task: int = 0) -> list[mx.Context]:
    """`devices` GPUs (worker `task` on a machine: the next ones), or `devices` CPU contexts on the CPU."""
    if on_cpu(device):
        return [mx.cpu(i) for i in range(devices)]  # [mx.cpu()] for 1: the one-device run, unchanged
    found = mx.context.num_gpus()
    first = task * devices % found if found >= devices else 0  # the launcher's workers take turns on the GPUs
    if first + devices > found:
        raise UserError(f"--devices {devices}: MXNet sees {found} GPU(s) here, fewer than this machine's workers "
                        f"need: pass --devices {found} or fewer (in all), or --device cpu for CPU contexts")
    return [mx.gpu(i) for i in range(first, first + devices)]


def _name(contexts: list[mx.Context]) -> str:
    """The device name for the book's line, widened to the replicas: `cpu(0)` becomes `cpu(0)+cpu(1)`."""
    return "+".join(device_name(ctx) for ctx in contexts)  # the book's names, cpu(0) and gpu(0)


def replicate(net: nn.HybridSequential, replicas: Replicas) -> None:
    """Give every context a copy of the network's parameters (before making its Trainer)."""
    if len(replicas.engine.contexts) > 1:  # one device: nothing to copy
        net.collect_params().reset_ctx(replicas.engine.contexts)  # the weights drawn on the first context, copied


def close(replicas: Replicas) -> None:
    """Leave the other worker processes (MXNet's exit barrier); one process holds every replica: nothing."""
    if isinstance(replicas.engine.kvstore, mx.kv.KVStore):
        _leave(replicas.engine.kvstore)


def _contexts(net: nn.HybridSequential) -> list[mx.Context]:
    """The contexts holding the network's replicas, in order."""
    return next(iter(net.collect_params().values())).list_ctx()  # every parameter lives on the same ones


# ---- Across processes ----

_KEYS = count(1 << 20)  # kvstore keys for our own exchanges, past Gluon's (one per parameter, from 0)
_SUMS: dict[tuple[int, ...], int] = {}  # the key of each shape summed so far (every worker makes them in turn)


def _bounded(what: str) -> AbstractContextManager[None]:
    """Stop this process with one line if `what`, a wait on the other processes, outlasts connect_timeout()."""
    return launch.bounded(f"{what}: no answer from the other MXNet processes in {launch.connect_timeout():.0f} s "
                          f"(one stopped, or cannot be reached): start them all again, with the same DMLC_* "
                          f"settings (ALEXNET_CONNECT_TIMEOUT=seconds if they are only slow)")


def _join() -> mx.kv.KVStore:
    """This worker's dist_sync kvstore: it registers with the scheduler and waits for every worker and server."""
    missing = [name for name in _DMLC if not os.environ.get(name)]
    if missing:
        raise UserError(f"DMLC_ROLE=worker but {', '.join(missing)} not set: give every process the scheduler's "
                        f"address and the counts (README: Several devices), or start them all with "
                        f"`python -m common.launch --backend mxnet --processes N -- python -m alexnet_mxnet.train ...`")
    where = f"{os.environ['DMLC_PS_ROOT_URI']}:{os.environ['DMLC_PS_ROOT_PORT']}"
    with _bounded(f"joining the scheduler at {where} ({os.environ['DMLC_NUM_WORKER']} workers, "
                  f"{os.environ['DMLC_NUM_SERVER']} servers)"):
        kv = mx.kv.create("dist_sync")
    atexit.register(_leave, kv)  # also when the run stops early: the others are waiting at the exit barrier
    return kv


def _leave(kv: mx.kv.KVStore) -> None:
    """MXNet's exit barrier (rank 0 then stops the servers), bounded; once only."""
    if kv.handle:
        with _bounded("leaving the other processes"):
            npx.waitall()
            check_call(_LIB.MXKVStoreFree(kv.handle))  # what KVStore.__del__ does, while a timeout can still act
        kv.handle = None  # freed: __del__ frees nothing more


def _init(kv: mx.kv.KVStore, keys: list[int], values: list[mx.nd.NDArray]) -> None:
    """Give the servers rank 0's `values` under `keys`, and wait until they hold them (on every worker)."""
    kv.init(keys, values)  # rank 0 pushes; the others only wait at a barrier, which can pass before the push lands
    npx.waitall()  # rank 0: the servers have acknowledged its values
    kv._barrier()  # the others: only now may they push or pull these keys ("init N first" otherwise)


def _sum(kv: mx.kv.KVStore, value: np.ndarray, what: str) -> np.ndarray:
    """The sum over the workers of each one's float32 `value` (the same shape on every worker)."""
    shape = value.shape
    with _bounded(what):
        if shape not in _SUMS:  # a new shape: a new key, made together
            _SUMS[shape] = next(_KEYS)
            _init(kv, [_SUMS[shape]], [mx.nd.zeros(shape)])
        out = mx.nd.zeros(shape)
        kv.pushpull(_SUMS[shape], mx.nd.array(value, dtype=np.float32), out=out)  # the servers add the pushes
        return out.asnumpy()


def _broadcast(kv: mx.kv.KVStore, value: object) -> object:
    """Rank 0's JSON-able `value`, on every worker (the others add zeros)."""
    def from_rank_0(x: np.ndarray) -> np.ndarray:
        return _sum(kv, (x if kv.rank == 0 else np.zeros_like(x)).astype(np.float32), "sharing rank 0's settings")

    return broadcast_json(value, from_rank_0)


def _agree(kv: mx.kv.KVStore, flag: bool) -> bool:
    """Whether any worker says True (all stop, or checkpoint, after the same minibatch)."""
    return bool(_sum(kv, np.array([float(flag)], np.float32), "agreeing on the next minibatch")[0] > 0)


def _meet(kv: mx.kv.KVStore) -> None:
    """Wait until every worker is here (MXNet's barrier)."""
    kv._barrier()


def _total(kv: mx.kv.KVStore, x: mx.np.ndarray) -> mx.np.ndarray:
    """`x` (sums over this worker's shards) summed over the workers, on x's context."""
    summed = _sum(kv, x.asnumpy().astype(np.float32), "adding up the workers' sums")
    return mx.np.array(summed, dtype=x.dtype, ctx=x.ctx)


def _start_together(trainer: gluon.Trainer, replicas: Replicas) -> None:
    """Rank 0's weights and update counts on every worker before the first step (rank 0 alone loads a checkpoint)."""
    with _bounded("copying rank 0's weights to every worker"):
        if not trainer._kv_initialized:
            trainer._init_kvstore()
        kv, params = trainer._kvstore, trainer._params  # Gluon's keys: the parameters' indices (sorted by name)
        # What Gluon's first step would do (kv.broadcast), without its two faults: a pull can reach a server
        # before rank 0's value does, and the kvstore cannot send oneDNN's blocked weight layouts (hence asnumpy).
        _init(kv, list(range(len(params))), [mx.nd.array(param.list_data()[0].asnumpy()) for param in params])
        pulled = [mx.nd.zeros(param.shape) for param in params]
        for i, out in enumerate(pulled):
            kv.pull(i, out=out)
        npx.waitall()
        for param, out in zip(params, pulled):
            param.set_data(out.as_np_ndarray())  # rank 0's value, on every context
        trainer._params_to_init = []  # done: the first step must not init them again
    optimizer = trainer._optimizer  # plain SGD keeps no state arrays: its state is these counts
    state = replicas.broadcast({"num_update": optimizer.num_update,
                                "counts": {str(d): {str(i): c for i, c in counts.items()}
                                           for d, counts in optimizer._all_index_update_counts.items()}})
    optimizer.num_update = state["num_update"]
    optimizer._all_index_update_counts.clear()
    for d, counts in state["counts"].items():
        optimizer._all_index_update_counts[int(d)] = {int(i): c for i, c in counts.items()}
    optimizer._set_current_context(0)


# ---- Data-parallel step ----


def _split_batch(X: mx.np.ndarray, y: mx.np.ndarray,
                contexts: list[mx.Context]) -> list[tuple[mx.np.ndarray, mx.np.ndarray]]:
    """A minibatch (this process's share of it) cut into each replica's contiguous shard, on its context."""
    shards = []
    for rank, ctx in enumerate(contexts):
        idx = shard(np.arange(len(y)), rank, len(contexts))
        if len(idx):  # a minibatch smaller than the number of replicas leaves some of them idle
            start, stop = int(idx[0]), int(idx[-1]) + 1
            shards.append((X[start:stop].as_in_ctx(ctx), y[start:stop].as_in_ctx(ctx)))  # copies
    return shards


def train_batch(net: nn.HybridSequential, X: mx.np.ndarray, y: mx.np.ndarray, n: int, loss: gluon.loss.Loss,
                trainer: gluon.Trainer) -> tuple[mx.np.ndarray, mx.np.ndarray]:
    """One data-parallel SGD step on this process's share of a minibatch of `n`; its summed loss and number correct."""
    contexts = _contexts(net)
    shards = _split_batch(X, y, contexts)
    with autograd.record():  # train mode: dropout on
        y_hats = [net(X_i) for X_i, _ in shards]  # (about n / replicas, 10), each on its replica's context
        ls = [loss(y_hat, y_i) for y_hat, (_, y_i) in zip(y_hats, shards)]  # one loss per example
    for l in ls:
        l.backward()
    # MXNet cannot backpropagate an empty shard: a replica left idle by a minibatch smaller than the
    # number of replicas adds a zero gradient instead, marked fresh as backward() would mark it.
    for ctx in contexts[len(shards):]:  # the empty shards are the last ones
        for param in net.collect_params().values():
            param.grad(ctx)[:] = 0
            param.data(ctx)._fresh_grad = True  # else trainer.step() refuses or skips this replica
    # The kvstore sums the replicas' gradients (across processes: the servers add the workers') and updates
    # every copy alike; step() divides by the GLOBAL batch size n: the global minibatch's mean gradient.
    trainer.step(n)
    if trainer._distributed:  # wait for the workers' sum here, where a lost worker cannot hang us for ever
        with _bounded("adding up the workers' gradients"):
            npx.waitall()
    l, correct = mx.np.zeros((), ctx=X.ctx), mx.np.zeros((), dtype=np.int64, ctx=X.ctx)  # an empty share adds 0
    for y_hat, l_i, (_, y_i) in zip(y_hats, ls, shards):
        l = l + l_i.sum().as_in_ctx(X.ctx)
        correct = correct + (y_hat.argmax(axis=1) == y_i).sum().as_in_ctx(X.ctx)
    return l, correct


def make_step(net: nn.HybridSequential, trainer: gluon.Trainer, replicas: Replicas) -> Step:
    """The training step, chosen once: step(X, y, n) -> (summed loss, number correct)."""
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    if replicas.count == 1:
        return lambda X, y, n: train_step(net, X, y, loss, trainer)
    if isinstance(replicas.engine.kvstore, mx.kv.KVStore):  # several workers: start from rank 0's weights
        _start_together(trainer, replicas)
    # X is this process's share of the minibatch of n (all of it in one process): train_batch shards it.
    return lambda X, y, n: train_batch(net, X, y, n, loss, trainer)


# ---- Launch ----


def launch_command(devices: int, module: str = "alexnet_mxnet.train", processes: int = 1) -> list[str]:
    """The command prefix that runs `module` on `devices` replicas in `processes` worker processes on this machine."""
    return launch.prefix(BACKEND, devices, processes, module, python=sys.executable)
