"""JAX's side of the data-parallel test: one fresh process drives every replica, or common.launch starts
several (as on several hosts), each driving its own; files in, files out."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from alexnet_jax.model import alexnet, get_weights, set_weights
from alexnet_jax.parallel import close, launch_command, make_step, replicas
from alexnet_jax.step import commit
from tests.harness.exchange import read_steps, steps_in_subprocess, write_replica


def data_parallel_steps(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, lr: float,
                        batch_size: int, devices: int,
                        processes: int = 1) -> tuple[list[dict[str, np.ndarray]], list[int]]:
    """SGD once over X, y in order on `devices` CPU replicas in `processes` processes, dropout off; each
    replica's weights and count."""
    # Fresh processes: XLA makes host CPU devices only before JAX's first operation.
    return steps_in_subprocess(launch_command(devices, "tests.harness.jax_dp", processes), weights, X, y, lr,
                               batch_size, devices)


def _global(x: np.ndarray, where: jax.sharding.Sharding) -> jax.Array:
    """`x`, the same in every process, as one array laid out by `where` (each process places its devices' parts)."""
    return jax.make_array_from_callback(x.shape, where, lambda index: x[index])


def _worker(argv: list[str] | None = None) -> None:
    """The steps in this process (which must not have run a JAX op yet), with the same replicas() and
    make_step() as a training run; the canonical weights of each replica this process holds."""
    args, weights, X, y = read_steps("python -m tests.harness.jax_dp", argv)
    where = replicas(args.devices, "cpu")
    with jax.default_device(where.device):
        net = alexnet(X.shape[-1])
        set_weights(net, weights)
        trainer = nnx.Optimizer(net, optax.sgd(args.lr), wrt=nnx.Param)
    commit(net, trainer)  # as build() does
    step = make_step(net, trainer, where)  # the weights to every replica
    net.eval()  # dropout off
    mesh = where.engine
    batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    X, y = np.transpose(X, (0, 2, 3, 1)), y.astype(np.int32)  # NCHW to NHWC
    for i in range(0, len(y), args.batch_size):  # global minibatches, the last possibly smaller
        X_batch, y_batch = X[i:i + args.batch_size], y[i:i + args.batch_size]
        pad = -len(y_batch) % where.count  # as DataIter pads: unlabelled rows, left out of the loss
        X_batch = np.pad(X_batch, ((0, pad), (0, 0), (0, 0), (0, 0)))
        y_batch = np.pad(y_batch, (0, pad), constant_values=-1)
        step(_global(X_batch, batch), _global(y_batch, batch), len(y[i:i + args.batch_size]))
    ranks = {d: rank for rank, d in enumerate(mesh.devices.flat)}  # each device's place in the mesh
    for device in mesh.local_devices:  # this process's replicas: each one's own copy of every parameter
        plain = alexnet(X.shape[1])
        for (_, var), (_, mine) in zip(nnx.iter_graph(plain), nnx.iter_graph(net)):
            if isinstance(mine, nnx.Param):
                var[...] = jnp.asarray(np.asarray(_on(mine[...], device)))
        write_replica(args.dir, ranks[device], get_weights(plain), X.shape[1], where.count)
    close(where)


def _on(x: jax.Array, device: jax.Device) -> jax.Array:
    """The copy of replicated `x` that `device` holds."""
    return next(s.data for s in x.addressable_shards if s.device == device)


if __name__ == "__main__":
    _worker(sys.argv[1:])
