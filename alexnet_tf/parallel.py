"""Data-parallel training with TensorFlow's own engine: tf.distribute, in one process or across several.

Each replica holds a copy of every variable, takes a contiguous share of every global minibatch, and
Keras's optimizer sums the replicas' gradients (an all-reduce) before each replica applies the same
update, so the copies stay identical.

One machine, one process: MirroredStrategy over its GPUs, or over virtual CPU devices on a CPU-only
machine; no launcher, and the one process reads and writes the run directory.

Several processes (several machines): MultiWorkerMirroredStrategy. TensorFlow has no launcher of its
own; each worker is told the cluster and its own place by the TF_CONFIG variable, for example on the
second of two machines

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 1}}'

and every worker runs the same command with the same flags, `--devices` counting the replicas of all
the workers (one CPU each, or every GPU of each). Every worker reads the data itself and walks every
global minibatch in the same seeded order, computing its replicas' shares; worker 0 (the chief) alone
reads and writes the run directory (`--out` is needed on it only), and on resume the chief's
checkpoint is copied to every worker through the strategy's collectives. A worker that cannot reach
the others, or loses one, stops with one line within ALEXNET_CONNECT_TIMEOUT seconds. To try it on one
machine, common.launch sets TF_CONFIG for each process on the loopback address:

    python -m common.launch --backend tf --processes 2 -- python -m alexnet_tf.train --devices 2 --device cpu
"""

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import keras
import numpy as np
import tensorflow as tf
from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2  # no public API for its timeouts
from tensorflow.python.eager import context

from alexnet_tf.step import device_name, get_device, on_cpu, train_step
from common import launch
from common.batches import shard
from common.errors import UserError
from common.replicas import Replicas, Step, broadcast_json

BACKEND = "tf"
_SUM = tf.distribute.ReduceOp.SUM

# ---- Replicas ----


def replicas(devices: int, device: str = "auto") -> Replicas:
    """The replicas of `--devices N` on `--device`: across the workers TF_CONFIG names, or in this one process."""
    here = get_device(device)
    workers, rank = _cluster()
    if len(workers) > 1:
        return _workers(devices, here, workers, rank)
    strategy = _strategy(devices, here)
    count = strategy.num_replicas_in_sync  # as the strategy counts them
    return Replicas(here, _name(strategy, device_name(here)), on_cpu=on_cpu(here), count=count, engine=strategy)


def _cluster() -> tuple[list[str], int]:
    """Every worker's address and this process's index among them (0: the chief), from TF_CONFIG."""
    if "TF_CONFIG" not in os.environ:
        return [], 0
    try:
        config = json.loads(os.environ["TF_CONFIG"])
        workers, task = list(config["cluster"]["worker"]), config["task"]
        rank = int(task["index"])
        ok = set(config["cluster"]) == {"worker"} and task["type"] == "worker" and 0 <= rank < len(workers)
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise UserError('TF_CONFIG is not a list of workers and this one\'s place among them: set it to {"cluster": '
                        '{"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}} '
                        "(index 0 on the chief, 1 on the next), or unset it for one process")
    return workers, rank


def _workers(devices: int, device: str, workers: list[str], rank: int) -> Replicas:
    """Join the other workers in a MultiWorkerMirroredStrategy; every wait for them bounded in time."""
    if on_cpu(device):
        tf.config.set_visible_devices([], "GPU")  # --device cpu: one CPU replica per worker, even beside GPUs
    timeout = launch.connect_timeout()
    ms = int(timeout * 1000)
    context.context().configure_coordination_service(  # the strategy keeps these (its own have no bound)
        "standalone", service_leader="/job:worker/replica:0/task:0", cluster_register_timeout_in_ms=ms,
        heartbeat_timeout_in_ms=ms, shutdown_barrier_timeout_in_ms=int(launch.stall_timeout() * 1000),
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name="worker", num_tasks=len(workers))])
    # A collective exchange waits longer for a live worker: the chief writes (and at the end evaluates) alone.
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=launch.stall_timeout())
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except tf.errors.UnknownError as e:
        if "gRPC server" not in str(e):
            raise
        port = workers[rank].rsplit(":", 1)[-1]
        raise UserError(f"port {port} of worker {rank} ({workers[rank]} in TF_CONFIG) is in use: stop what holds it, "
                        f"or give this worker another port in every worker's TF_CONFIG") from None
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError):
        raise UserError(f"worker {rank} could not reach all {len(workers)} workers of TF_CONFIG "
                        f"({', '.join(workers)}) within {timeout:g} s: start every worker, each with its own "
                        f"index, or raise ALEXNET_CONNECT_TIMEOUT") from None
    count = strategy.num_replicas_in_sync  # as the strategy counts them: every worker's replicas
    agree = partial(_agree, strategy)
    if agree(devices != count):  # every worker stops here, or none does
        raise UserError(f"--devices {devices}, but the {len(workers)} workers hold {count} replicas: pass "
                        f"--devices {count} to every worker" if devices != count else
                        f"another worker was given a --devices other than {count}: pass --devices {count} to "
                        f"every worker")
    name = f"{_name(strategy, device_name(device))} x{count} ({len(workers)} workers)"
    return Replicas(device, name, on_cpu=on_cpu(device), count=count, rank=rank,
                    processes=len(workers), engine=strategy, broadcast=partial(_broadcast, strategy), agree=agree,
                    meet=partial(_meet, strategy))


def _strategy(devices: int, device: str) -> tf.distribute.Strategy:
    """The strategy for `devices` replicas of `device`'s kind (the default strategy for one)."""
    if devices == 1:
        return tf.distribute.get_strategy()  # no replicas: the one-device code path, unchanged
    if device.startswith("/GPU"):
        found = len(tf.config.list_physical_devices("GPU"))
        if devices > found:
            raise UserError(f"--devices {devices}: TensorFlow sees {found} GPU(s): pass --devices {found} "
                            f"or fewer, or --device cpu for virtual CPU devices")
        return tf.distribute.MirroredStrategy([f"/GPU:{i}" for i in range(devices)])
    _virtual_cpus(devices)
    return tf.distribute.MirroredStrategy([f"/CPU:{i}" for i in range(devices)])


def _virtual_cpus(devices: int) -> None:
    """Split the CPU into `devices` logical devices; TensorFlow allows it only before its runtime starts."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError:  # the runtime has started: devices made earlier in this process will do
        if len(tf.config.list_logical_devices("CPU")) < devices:
            raise UserError(f"--devices {devices}: TensorFlow makes virtual CPU devices only before it runs "
                            f"its first operation: call replicas() first, in a fresh process") from None


def _name(strategy: tf.distribute.Strategy, name: str) -> str:
    """The device name for the book's line, widened to the replicas: `/CPU:0` becomes `/CPU:0+/CPU:1`."""
    if strategy.num_replicas_in_sync == 1:
        return name
    short = ["/" + d.rsplit("device:", 1)[-1] for d in strategy.extended.worker_devices]
    return name.replace(short[0], "+".join(short), 1)


def close(replicas: Replicas) -> None:
    """Nothing to leave: the strategy lives and ends with this process (the others wait for it at exit)."""


# ---- Across processes ----


def _from_chief(strategy: tf.distribute.Strategy, x: tf.Tensor) -> tf.Tensor:
    """`x` as the chief holds it, on every worker: an all-reduce (SUM) where every other replica gives zeros."""

    def mine(ctx: tf.distribute.experimental.ValueContext) -> tf.Tensor:
        return tf.identity(x) if ctx.replica_id_in_sync_group == 0 else tf.zeros_like(x)

    with _together():
        return strategy.reduce(_SUM, strategy.experimental_distribute_values_from_function(mine), axis=None)


def _broadcast(strategy: tf.distribute.Strategy, obj: object) -> object:
    """The chief's `obj` (JSON-able), on every worker."""
    return broadcast_json(obj, lambda a: _from_chief(strategy, tf.constant(a.astype(np.int32))).numpy())


def _agree(strategy: tf.distribute.Strategy, flag: bool) -> bool:
    """Whether any worker says True (all of them stop, or checkpoint, at the same minibatch)."""

    def mine(ctx: tf.distribute.experimental.ValueContext) -> tf.Tensor:  # each replica votes its worker's flag
        return tf.constant(int(flag), tf.int32)

    with _together():
        return bool(strategy.reduce(_SUM, strategy.experimental_distribute_values_from_function(mine), axis=None))


def _meet(strategy: tf.distribute.Strategy) -> None:
    """Wait until every worker is here (an exchange of nothing)."""
    _agree(strategy, False)


@contextmanager
def _together() -> Iterator[None]:
    """TensorFlow's errors when a worker is gone, unreachable or stalled, as one line naming the fix."""
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
            tf.errors.AbortedError) as e:
        raise UserError(f"lost the other workers ({type(e).__name__}): one stopped (see its own error) or cannot "
                        f"be reached; start every worker again (add --resume to continue the run)") from None


def _share_weights(strategy: tf.distribute.Strategy, variables: list[tf.Variable]) -> None:
    """Every worker's copies set to the chief's: the chief alone loaded the checkpoint."""
    for v in variables:
        v.assign(_from_chief(strategy, tf.convert_to_tensor(v.value)))  # to this worker's copies


# ---- Data-parallel step ----


def _split_batch(strategy: tf.distribute.Strategy, X: tf.Tensor, y: tf.Tensor) -> tuple:
    """A global minibatch cut into each replica's contiguous share (common.batches.shard)."""

    def share(ctx: tf.distribute.experimental.ValueContext) -> tuple[tf.Tensor, tf.Tensor]:
        idx = shard(np.arange(len(y)), ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync)
        return tf.gather(X, idx), tf.gather(y, idx)  # TensorFlow copies it to the replica's device

    return strategy.experimental_distribute_values_from_function(share)


@tf.function(reduce_retracing=True)
def _mirrored_step(strategy: tf.distribute.Strategy, net: keras.Sequential, X: tf.distribute.DistributedValues,
                   y: tf.distribute.DistributedValues, trainer: keras.optimizers.Optimizer, batch_size: int,
                   training: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """One SGD step on every replica at once, inside one compiled graph."""

    def forward_backward(X: tf.Tensor, y: tf.Tensor) -> tuple:  # on one replica, with its share
        with tf.GradientTape() as tape:
            y_hat = tf.cast(net(X, training=training), tf.float32)  # (B / devices, 10); --fast: from bf16
            l = keras.losses.sparse_categorical_crossentropy(y, y_hat, from_logits=True)  # per example
            # Summed over the share, divided by the GLOBAL batch: the replicas' gradients add up to the mean's.
            l = tf.nn.compute_average_loss(l, global_batch_size=batch_size)
        correct = tf.reduce_sum(tf.cast(tf.argmax(y_hat, axis=1, output_type=y.dtype) == y, tf.float32))
        return l * batch_size, correct, tape.gradient(l, net.trainable_variables)

    def nothing() -> tuple:  # an empty share (last minibatch smaller than the replicas): oneDNN fails on it
        return tf.zeros(()), tf.zeros(()), [tf.zeros(v.shape) for v in net.trainable_variables]

    def step(X: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        l, correct, grads = tf.cond(tf.size(y) > 0, lambda: forward_backward(X, y), nothing)
        trainer.apply_gradients(zip(grads, net.trainable_variables))  # Keras all-reduces (sums) them first
        return l, correct

    l, correct = strategy.run(step, args=(X, y))
    # The replicas' summed losses and counts, to the caller (across workers: on every worker).
    return strategy.reduce(_SUM, l, axis=None), strategy.reduce(_SUM, correct, axis=None)


def train_batch(net: keras.Sequential, X: tf.Tensor, y: tf.Tensor, n: int, trainer: keras.optimizers.Optimizer,
                training: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """One SGD step on every replica's share of a minibatch of `n`; the summed loss and number correct."""
    strategy = net.distribute_strategy  # the strategy whose scope the network was built in
    X_shares, y_shares = _split_batch(strategy, X, y)
    with _together():  # several workers: one of them lost ends the run with one line
        return _mirrored_step(strategy, net, X_shares, y_shares, trainer, n, training)


def make_step(net: keras.Sequential, trainer: keras.optimizers.Optimizer, replicas: Replicas) -> Step:
    """The training step, chosen once: step(X, y, n) -> (summed loss, number correct); training=False: no dropout."""
    if replicas.count == 1:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        return lambda X, y, n, training=True: train_step(net, X, y, loss, trainer, training)
    # The variables were made under the strategy's scope: every replica holds the same weights (the
    # chief's, across workers), but only the chief's were loaded from a checkpoint: they go to the others.
    if replicas.processes > 1:
        _share_weights(replicas.engine, [*net.trainable_variables, *trainer.variables])
    return lambda X, y, n, training=True: train_batch(net, X, y, n, trainer, training)


# ---- Launch ----


def launch_command(devices: int, module: str = "alexnet_tf.train", processes: int = 1) -> list[str]:
    """The command prefix that runs `module` on `devices` replicas here.

    One process (the strategy inside it), or `processes` workers started by common.launch, each told
    its place by TF_CONFIG, as on as many machines.
    """
    return launch.prefix(BACKEND, devices, processes, module, python=sys.executable)
