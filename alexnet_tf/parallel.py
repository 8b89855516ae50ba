"""Data-parallel training with TensorFlow's own engine: tf.distribute.MirroredStrategy on one machine.

Each replica holds a copy of every variable, takes a contiguous share of every global minibatch, and
Keras's optimizer sums the replicas' gradients (an all-reduce) before each replica applies the same
update, so the copies stay identical. On a CPU-only machine the replicas are virtual CPU devices.
One process drives them all: no launcher, and it alone reads and writes the run directory.
"""

import sys

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.step import device_name, get_device, train_step
from common.batches import shard
from common.errors import UserError
from common.replicas import Replicas, Step

# ---- Replicas ----


def replicas(devices: int, device: str = "auto") -> Replicas:
    """A MirroredStrategy over `devices` GPUs or virtual CPU devices on `--device`; for 1, TensorFlow's default."""
    here = get_device(device)
    strategy = _strategy(devices, here)
    count = strategy.num_replicas_in_sync  # as the strategy counts them
    return Replicas(here, _name(strategy, device_name(here)), on_cpu=here.startswith("/CPU"), count=count,
                    engine=strategy)


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
    """Nothing to leave: the strategy lives and ends with this one process."""


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
    SUM = tf.distribute.ReduceOp.SUM  # the replicas' summed losses and counts, to the caller
    return strategy.reduce(SUM, l, axis=None), strategy.reduce(SUM, correct, axis=None)


def train_batch(net: keras.Sequential, X: tf.Tensor, y: tf.Tensor, n: int, trainer: keras.optimizers.Optimizer,
                training: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """One SGD step on every replica's share of a minibatch of `n`; the summed loss and number correct."""
    strategy = net.distribute_strategy  # the strategy whose scope the network was built in
    X_shares, y_shares = _split_batch(strategy, X, y)
    return _mirrored_step(strategy, net, X_shares, y_shares, trainer, n, training)


def make_step(net: keras.Sequential, trainer: keras.optimizers.Optimizer, replicas: Replicas) -> Step:
    """The training step, chosen once: step(X, y, n) -> (summed loss, number correct); training=False: no dropout."""
    if replicas.count == 1:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        return lambda X, y, n, training=True: train_step(net, X, y, loss, trainer, training)
    # The variables were made under the strategy's scope: every replica already holds the same weights.
    return lambda X, y, n, training=True: train_batch(net, X, y, n, trainer, training)


# ---- Launch ----


def launch_command(devices: int, module: str = "alexnet_tf.train") -> list[str]:
    """The command prefix that runs `module` on `devices` replicas here: one process, the strategy inside it."""
    return [sys.executable, "-m", module]
