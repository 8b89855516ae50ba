"""Data-parallel training with JAX's own engine: a device mesh, the minibatch sharded along it, parameters replicated.

One compiled step serves one device and N: with the parameters replicated on every device of a 1-D mesh
and each minibatch cut along it (alexnet_jax/data.py), XLA's SPMD partitioner runs each replica on its
contiguous share and adds the replicas' gradients (an all-reduce) before the same update everywhere, so
the copies stay identical. On a CPU-only machine the replicas are N host devices, which XLA makes only
if asked before JAX starts its backend.

One process drives them all on one machine: no launcher. On several hosts, JAX's multi-controller way:
one process per host, each started with JAX_COORDINATOR_ADDRESS (process 0's host and a free port),
JAX_NUM_PROCESSES and JAX_PROCESS_ID (`python -m common.launch --backend jax` sets them on one machine).
`jax.distributed.initialize` joins them (Gloo carries the collectives between CPUs), the mesh spans the
devices of every process, and every process runs the same program on the same global arrays: each one
computes its devices' shares of every minibatch, and the step's all-reduce crosses the hosts. Process 0
alone reads and writes the run directory; its weights (a checkpoint loaded there) are copied to all.
"""

import os
import sys
from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from alexnet_jax.step import device_name, get_device, on_cpu, train_step
from common import launch
from common.errors import UserError
from common.replicas import Replicas, Step, broadcast_json

BACKEND = "jax"

# ---- Replicas ----


def replicas(devices: int, device: str = "auto") -> Replicas:
    """A 1-D mesh of `devices` GPUs or host CPU devices on `--device`, across the processes if several."""
    rank, processes = _place()
    if processes > 1:
        return _join(devices, device, rank, processes)
    if devices > 1:
        _host_devices(devices)  # before get_device: asking for devices starts JAX's backend
    here = get_device(device)
    if devices == 1:
        return Replicas(here, device_name(here), on_cpu=on_cpu(here))
    mesh = _mesh(devices, here)
    count = mesh.size  # as the mesh counts them
    name = "+".join(device_name(d) for d in mesh.devices.flat)
    return Replicas(here, name, on_cpu=on_cpu(here), count=count, engine=mesh)


def _place() -> tuple[int, int]:
    """This process's id and the number of processes, from JAX_PROCESS_ID and JAX_NUM_PROCESSES (0 and 1 if unset)."""
    names = ("JAX_PROCESS_ID", "JAX_NUM_PROCESSES")
    if not any(os.environ.get(n) for n in (*names, "JAX_COORDINATOR_ADDRESS")):
        return 0, 1
    try:
        rank, processes = (int(os.environ[n]) for n in names)
        if not 0 <= rank < processes:
            raise ValueError
    except (KeyError, ValueError):
        raise UserError(f"JAX_COORDINATOR_ADDRESS={os.environ.get('JAX_COORDINATOR_ADDRESS')}, "
                        f"JAX_NUM_PROCESSES={os.environ.get('JAX_NUM_PROCESSES')}, JAX_PROCESS_ID="
                        f"{os.environ.get('JAX_PROCESS_ID')}: set all three (the id from 0 to the count - 1), "
                        f"or none for one process") from None
    return rank, processes


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


def _join(devices: int, device: str, rank: int, processes: int) -> Replicas:
    """Meet the other processes and make one mesh of all their devices (GPUs, or devices/processes CPU devices each)."""
    if devices % processes:
        raise UserError(f"--devices {devices} cannot be shared by {processes} processes: pass a multiple of "
                        f"{processes} (each process drives --devices / {processes} of them)")
    _host_devices(devices // processes)  # on a CPU: this process's share of the replicas
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # collectives between the hosts' CPUs
    _initialize(os.environ.get("JAX_COORDINATOR_ADDRESS", ""), rank, processes)
    platform = get_device(device).platform
    mesh = Mesh(np.array(jax.devices(platform)), ("batch",))  # every process's devices, process 0's first
    local = jax.local_devices(backend=platform)  # this process's share of the mesh
    name = f"{'+'.join(device_name(d) for d in local)} x{mesh.size} ({processes} processes)"
    made = Replicas(local[0], name, on_cpu=on_cpu(local[0]), count=mesh.size, rank=jax.process_index(),
                    processes=jax.process_count(), engine=mesh, broadcast=lambda value: _broadcast(value, mesh),
                    agree=lambda flag: _agree(flag, mesh), meet=lambda: _meet(mesh))
    if made.agree(devices != mesh.size):  # every process stops, or none does
        jax.distributed.shutdown()
        raise UserError(f"--devices {devices} here, but the {processes} processes hold {mesh.size} devices in all: "
                        f"give every process the same --devices (the total, a multiple of {processes})")
    return made


def _initialize(address: str, rank: int, processes: int) -> None:
    """jax.distributed.initialize, waiting at most launch.connect_timeout() for the others; one line if not."""
    timeout = launch.connect_timeout()
    port = address.rsplit(":", 1)[-1]
    late = (f"process {rank} of {processes} did not meet the others at JAX's coordinator {address} within "
            f"{timeout:.0f} s: start every process (JAX_PROCESS_ID 0 to {processes - 1}; process 0 on the "
            f"coordinator's host) with the same JAX_COORDINATOR_ADDRESS, or raise ALEXNET_CONNECT_TIMEOUT")

    if rank == 0:  # it starts the coordinator; JAX may abort without a word when the port is taken
        _coordinator_port_free(address)
    with launch.bounded(late):  # JAX itself would abort the process with a C++ stack trace when its wait ends
        try:
            seconds = int(timeout) + 1
            jax.distributed.initialize(address, processes, rank, initialization_timeout=seconds + 30,
                                       heartbeat_timeout_seconds=seconds, shutdown_timeout_seconds=seconds)
        except (RuntimeError, ValueError) as e:  # JaxRuntimeError is a RuntimeError
            said = str(e).splitlines()[0] if str(e) else type(e).__name__
            if rank == 0:  # it starts the coordinator: the port is its to bind
                raise _port_taken(address, f" ({said}): port {port} is probably in use") from None
            raise UserError(f"{late} ({said})") from None


def _coordinator_port_free(address: str) -> None:
    """Refuse, naming it, a coordinator port that something on this host already holds."""
    port = address.rsplit(":", 1)[-1]
    try:
        launch.free_ports(1, int(port))
    except ValueError:  # not a number: JAX's own error names the address
        return
    except UserError:
        raise _port_taken(address, f": port {port} is in use") from None


def _port_taken(address: str, how: str) -> UserError:
    """The one line for a coordinator port that process 0 cannot have; `how` says how sure that is."""
    return UserError(f"process 0 cannot start JAX's coordinator on {address}{how}: free it or pick another port "
                     f"in JAX_COORDINATOR_ADDRESS for every process (python -m common.launch --port)")


def close(replicas: Replicas) -> None:
    """Leave the other processes (jax.distributed.shutdown); with one process the mesh ends with it."""
    if replicas.processes > 1:
        jax.distributed.shutdown()


# ---- Across processes ----


@cache
def _summed(mesh: Mesh) -> jax.stages.Wrapped:
    """A compiled sum over the mesh's rows, replicated on every device: an all-reduce across the processes."""
    return jax.jit(lambda rows: jnp.sum(rows, axis=0), out_shardings=NamedSharding(mesh, PartitionSpec()))


def _from_rows(x: np.ndarray, mesh: Mesh, mine: bool) -> jax.Array:
    """The sum of every process's `x` (of those with `mine`), replicated on every device of the mesh."""
    x = np.asarray(x)
    local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    rows = [jax.device_put((x if mine and i == 0 else np.zeros_like(x))[None], d) for i, d in enumerate(local)]
    stacked = jax.make_array_from_single_device_arrays((mesh.size, *x.shape),
                                                       NamedSharding(mesh, PartitionSpec("batch")), rows)
    return _summed(mesh)(stacked)


def _from_process_0(x: jax.Array, mesh: Mesh) -> jax.Array:
    """Process 0's `x` on every device of the mesh (the others' are left out): exact, as it adds zeros."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):  # a random stream's key: its raw bits travel
        return jax.random.wrap_key_data(_from_process_0(jax.random.key_data(x), mesh), impl=jax.random.key_impl(x))
    return _from_rows(np.asarray(x), mesh, jax.process_index() == 0)


def _broadcast(value: object, mesh: Mesh) -> object:
    """Process 0's JSON-able `value`, on every process (in blocks of 1 KiB: a few shapes, a few compilations)."""
    return broadcast_json(value, lambda x: np.asarray(_from_rows(x, mesh, jax.process_index() == 0)), block=1024)


def _agree(flag: bool, mesh: Mesh) -> bool:
    """Whether any process says True (all processes stop, or checkpoint, at the same minibatch)."""
    return bool(np.asarray(_from_rows(np.array(int(flag), np.int32), mesh, True)) > 0)


def _meet(mesh: Mesh) -> None:
    """Wait until every process is here (a sum of nothing)."""
    _agree(False, mesh)


# ---- Data-parallel step ----


def train_batch(net: nnx.Sequential, X: jax.Array, y: jax.Array, n: int,
                trainer: nnx.Optimizer) -> tuple[jax.Array, jax.Array]:
    """One SGD step on every replica's share of a minibatch of `n`; the summed loss and number correct.

    X and y arrive cut along the mesh (padded to a multiple of the replicas with unlabelled rows, which
    the loss leaves out): the one compiled step, partitioned by XLA, is the data-parallel step. Its sums,
    replicated on every device, come back as this process's own copy (on its first device).
    """
    l, correct = train_step(net, X, y, trainer)
    return l.addressable_data(0), correct.addressable_data(0)


def make_step(net: nnx.Sequential, trainer: nnx.Optimizer, replicas: Replicas) -> Step:
    """The training step, chosen once: step(X, y, n) -> (summed loss, number correct)."""
    if replicas.count == 1:
        return lambda X, y, n: train_step(net, X, y, trainer)
    # Every replica a copy of process 0's weights and optimizer state (a checkpoint loads there).
    for node in (net, trainer):
        nnx.update(node, jax.tree.map(lambda x: _from_process_0(x, replicas.engine), nnx.state(node)))
    return lambda X, y, n: train_batch(net, X, y, n, trainer)


# ---- Launch ----


def launch_command(devices: int, module: str = "alexnet_jax.train", processes: int = 1) -> list[str]:
    """The command prefix that runs `module` on `devices` replicas here.

    One process (the mesh inside it), or `processes` started by common.launch as on as many hosts.
    """
    return launch.prefix(BACKEND, devices, processes, module, python=sys.executable)
