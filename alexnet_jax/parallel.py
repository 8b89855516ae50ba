"""Data-parallel training with JAX's own engine: a device mesh, the minibatch sharded along it, parameters replicated.

One compiled step serves one device and N: with the parameters replicated on every device of a 1-D mesh
and each minibatch cut along it (alexnet_jax/data.py), XLA's SPMD partitioner runs each replica on its
contiguous share and adds the replicas' gradients (an all-reduce) before the same update everywhere, so
the copies stay identical. On a CPU-only machine the replicas are N host devices, which XLA makes only
if asked before JAX starts its backend. One process drives them all: no launcher.
"""

import sys

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from alexnet_jax.step import device_name, get_device, train_step
from common.errors import UserError
from common.replicas import Replicas, Step

# ---- Replicas ----


def replicas(devices: int, device: str = "auto") -> Replicas:
    """A 1-D mesh of `devices` GPUs or host CPU devices on `--device`; for 1, JAX's device alone."""
    if devices > 1:
        _host_devices(devices)  # before get_device: asking for devices starts JAX's backend
    here = get_device(device)
    if devices == 1:
        return Replicas(here, device_name(here), on_cpu=here.platform == "cpu")
    mesh = _mesh(devices, here)
    count = mesh.size  # as the mesh counts them
    name = "+".join(device_name(d) for d in mesh.devices.flat)
    return Replicas(here, name, on_cpu=here.platform == "cpu", count=count, engine=mesh)


def _host_devices(devices: int) -> None:
    """Ask XLA for `devices` CPU devices; JAX allows it only before its backend starts (its first operation)."""
    try:
        jax.config.update("jax_num_cpu_devices", max(devices, jax.config.jax_num_cpu_devices))
    except RuntimeError:  # the backend has started: the devices it made will have to do
        pass


def _mesh(devices: int, here: jax.Device) -> Mesh:
    """The first `devices` devices of `here`'s kind, in a row named 'batch'."""
    found = jax.devices(here.platform)
    if devices > len(found):
        if here.platform == "gpu":
            raise UserError(f"--devices {devices}: JAX sees {len(found)} GPU(s): pass --devices {len(found)} "
                            f"or fewer, or --device cpu for host CPU devices")
        raise UserError(f"--devices {devices}: JAX made {len(found)} CPU device(s) and makes more only before "
                        f"its first operation: call replicas() first, in a fresh process")
    return Mesh(np.array(found[:devices]), ("batch",))


def close(replicas: Replicas) -> None:
    """Nothing to leave: the mesh lives and ends with this one process."""


# ---- Data-parallel step ----


def train_batch(net: nnx.Sequential, X: jax.Array, y: jax.Array, n: int,
                trainer: nnx.Optimizer) -> tuple[jax.Array, jax.Array]:
    """One SGD step on every replica's share of a minibatch of `n`; the summed loss and number correct.

    X and y arrive cut along the mesh (padded to a multiple of the replicas with unlabelled rows, which
    the loss leaves out): the one compiled step, partitioned by XLA, is the data-parallel step.
    """
    return train_step(net, trainer, X, y)


def make_step(net: nnx.Sequential, trainer: nnx.Optimizer, replicas: Replicas) -> Step:
    """The training step, chosen once: step(X, y, n) -> (summed loss, number correct)."""
    if replicas.count == 1:
        return lambda X, y, n: train_step(net, trainer, X, y)
    # Every replica a copy of the weights and the optimizer's state (a checkpoint loaded here too).
    replicated = NamedSharding(replicas.engine, PartitionSpec())
    for node in (net, trainer):
        nnx.update(node, jax.device_put(nnx.state(node), replicated))
    return lambda X, y, n: train_batch(net, X, y, n, trainer)


# ---- Launch ----


def launch_command(devices: int, module: str = "alexnet_jax.train") -> list[str]:
    """The command prefix that runs `module` on `devices` replicas here: one process, the mesh inside it."""
    return [sys.executable, "-m", module]
