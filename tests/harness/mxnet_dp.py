"""MXNet's side of the data-parallel test: one process drives every replica, so it runs here, in-process."""

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import nn

from alexnet_mxnet.model import alexnet, get_weights, set_weights
from alexnet_mxnet.parallel import close, make_step, replicas, replicate
from alexnet_mxnet.step import without_dropout


def data_parallel_steps(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, lr: float,
                        batch_size: int, devices: int) -> tuple[list[dict[str, np.ndarray]], list[int]]:
    """SGD once over X, y in order on `devices` CPU replicas, dropout off; each replica's weights and count."""
    where = replicas(devices, "cpu")  # the same replicas() and make_step() as a training run
    net = alexnet(X.shape[-1], where.device)
    set_weights(net, weights)
    replicate(net, where)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr}, kvstore="device")
    # Dropout off by leaving it out, trained in train mode: step.without_dropout says why not train_mode=False.
    step = make_step(without_dropout(net), trainer, where)
    for i in range(0, len(y), batch_size):  # global minibatches in order, the last possibly smaller
        X_batch = mx.np.array(X[i:i + batch_size], dtype=np.float32, ctx=where.device)  # (B, 1, H, W)
        y_batch = mx.np.array(y[i:i + batch_size], dtype=np.int64, ctx=where.device)  # (B,)
        step(X_batch, y_batch, len(y_batch))  # the whole minibatch: the step shards it over the replicas
    found = [_weights_on(net, ctx) for ctx in where.engine]
    close(where)
    return found, [where.count] * len(found)  # the replicas as the engine counts them


def _weights_on(net: nn.HybridSequential, ctx: mx.Context) -> dict[str, np.ndarray]:
    """The canonical weights of the replica on `ctx`."""
    with ctx:  # on several contexts, Parameter.data() reads the current context's copy
        return get_weights(net)
