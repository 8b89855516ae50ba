"""Data-parallel training with TensorFlow's own engine: tf.distribute.MirroredStrategy on one machine.

Each replica holds a copy of every variable, takes a contiguous share of every global minibatch, and
Keras's optimizer sums the replicas' gradients (an all-reduce) before each replica applies the same
update, so the copies stay identical. On a CPU-only machine the replicas are virtual CPU devices.
"""

import sys

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.model import alexnet, get_weights, set_weights
from common.batches import shard
from common.errors import UserError
from common.exchange import read_steps, steps_in_subprocess, write_replica

# ---- Replicas ----


def replicas(devices: int, device: str) -> tf.distribute.Strategy:
    """A MirroredStrategy over `devices` GPUs or virtual CPU devices; for 1, TensorFlow's default strategy."""
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


def replicas_name(strategy: tf.distribute.Strategy, name: str) -> str:
    """The device name for the book's line, widened to the replicas: `/CPU:0` becomes `/CPU:0+/CPU:1`."""
    if strategy.num_replicas_in_sync == 1:
        return name
    short = ["/" + d.rsplit("device:", 1)[-1] for d in strategy.extended.worker_devices]
    return name.replace(short[0], "+".join(short), 1)


def local_copies(variable: keras.Variable, strategy: tf.distribute.Strategy | None = None) -> tuple:
    """Each replica's copy of a Keras variable (just the variable on one device)."""
    if strategy is None:
        return (variable,)
    return strategy.experimental_local_results(variable.value)


def split_batch(strategy: tf.distribute.Strategy, X: tf.Tensor, y: tf.Tensor) -> tuple:
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


def train_batch(strategy: tf.distribute.Strategy, net: keras.Sequential, X: tf.Tensor, y: tf.Tensor,
                trainer: keras.optimizers.Optimizer, training: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """One data-parallel SGD step on a global minibatch; returns the summed loss and the number correct."""
    X_shares, y_shares = split_batch(strategy, X, y)
    return _mirrored_step(strategy, net, X_shares, y_shares, trainer, len(y), training)


# ---- Data-parallel steps ----


def _steps_here(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, lr: float, batch_size: int,
                devices: int) -> list[dict[str, np.ndarray]]:
    """data_parallel_steps in this process (which must not have run a TensorFlow op yet)."""
    strategy = replicas(devices, "/CPU:0")
    with strategy.scope():
        net = alexnet(X.shape[-1])
        trainer = keras.optimizers.SGD(learning_rate=lr)
        trainer.build(net.trainable_variables)
    set_weights(net, weights)  # to every replica
    X, y = tf.constant(np.transpose(X, (0, 2, 3, 1))), tf.constant(y)  # NCHW to NHWC
    for i in range(0, len(y), batch_size):
        train_batch(strategy, net, X[i:i + batch_size], y[i:i + batch_size], trainer, training=False)
    plain = alexnet(X.shape[1])  # one replica's copies go through it to the canonical layouts
    results = []
    for rank in range(devices):
        for v, mirrored in zip(plain.trainable_variables, net.trainable_variables):
            v.assign(local_copies(mirrored, strategy)[rank])
        results.append(get_weights(plain))
    return results


def data_parallel_steps(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, lr: float,
                        batch_size: int, devices: int) -> list[dict[str, np.ndarray]]:
    """SGD over X, y once on `devices` replicas, dropout off; each replica's final canonical weights."""
    # A fresh process: virtual CPU devices cannot be made once this one has run TensorFlow.
    return steps_in_subprocess([sys.executable, "-m", "alexnet_tf.parallel"], weights, X, y, lr, batch_size, devices)


def _worker(argv: list[str] | None = None) -> None:
    """The subprocess of data_parallel_steps: NumPy and safetensors files in, one file per replica out."""
    args, weights, X, y = read_steps("python -m alexnet_tf.parallel", argv)
    for rank, replica in enumerate(_steps_here(weights, X, y, args.lr, args.batch_size, args.devices)):
        write_replica(args.dir, rank, replica, X.shape[-1])


# ---- Launch ----


def launch_command(devices: int) -> list[str]:
    """The command that trains on `devices` replicas here: one process, the strategy lives inside it."""
    return [sys.executable, "-m", "alexnet_tf.train"]


if __name__ == "__main__":
    _worker()
