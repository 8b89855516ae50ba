"""JAX's side of the data-parallel test: one fresh process drives every replica; files in, files out."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from alexnet_jax.model import alexnet, get_weights, set_weights
from alexnet_jax.parallel import close, launch_command, make_step, replicas
from tests.harness.exchange import serve, steps_in_subprocess


def data_parallel_steps(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, lr: float,
                        batch_size: int, devices: int) -> tuple[list[dict[str, np.ndarray]], list[int]]:
    """SGD once over X, y in order on `devices` CPU replicas, dropout off; each replica's weights and count."""
    # A fresh process: XLA makes host CPU devices only before JAX's first operation.
    return steps_in_subprocess(launch_command(devices, "tests.harness.jax_dp"), weights, X, y, lr, batch_size,
                               devices)


def _steps_here(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, lr: float, batch_size: int,
                devices: int) -> tuple[list[dict[str, np.ndarray]], int]:
    """data_parallel_steps in this process (which must not have run a JAX op yet), with the same
    replicas() and make_step() as a training run; each replica's canonical weights, and their count."""
    where = replicas(devices, "cpu")
    with jax.default_device(where.device):
        net = alexnet(X.shape[-1])
        set_weights(net, weights)
        trainer = nnx.Optimizer(net, optax.sgd(lr), wrt=nnx.Param)
    step = make_step(net, trainer, where)  # the weights to every replica
    net.eval()  # dropout off
    mesh = where.engine
    batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    X, y = np.transpose(X, (0, 2, 3, 1)), y.astype(np.int32)  # NCHW to NHWC
    for i in range(0, len(y), batch_size):  # global minibatches, the last possibly smaller
        X_batch, y_batch = X[i:i + batch_size], y[i:i + batch_size]
        pad = -len(y_batch) % where.count  # as DataIter pads: unlabelled rows, left out of the loss
        X_batch = np.pad(X_batch, ((0, pad), (0, 0), (0, 0), (0, 0)))
        y_batch = np.pad(y_batch, (0, pad), constant_values=-1)
        step(jax.device_put(X_batch, batch), jax.device_put(y_batch, batch), len(y[i:i + batch_size]))
    results = []
    for rank in range(where.count):  # each replica's own copy of every parameter
        plain = alexnet(X.shape[1])
        for (_, var), (_, mine) in zip(nnx.iter_graph(plain), nnx.iter_graph(net)):
            if isinstance(mine, nnx.Param):
                var[...] = jnp.asarray(np.asarray(mine[...].addressable_shards[rank].data))
        results.append(get_weights(plain))
    close(where)
    return results, where.count


if __name__ == "__main__":
    serve("python -m tests.harness.jax_dp", _steps_here, sys.argv[1:])
