"""TensorFlow's side of the data-parallel test: one fresh process drives every replica; files in, files out."""

import sys

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.model import alexnet, get_weights, set_weights
from alexnet_tf.parallel import close, launch_command, make_step, replicas
from tests.harness.exchange import serve, steps_in_subprocess


def data_parallel_steps(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, lr: float,
                        batch_size: int, devices: int) -> tuple[list[dict[str, np.ndarray]], list[int]]:
    """SGD once over X, y in order on `devices` CPU replicas, dropout off; each replica's weights and count."""
    # A fresh process: virtual CPU devices cannot be made once this one has run TensorFlow.
    return steps_in_subprocess(launch_command(devices, "tests.harness.tf_dp"), weights, X, y, lr, batch_size,
                               devices)


def _steps_here(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, lr: float, batch_size: int,
                devices: int) -> tuple[list[dict[str, np.ndarray]], int]:
    """data_parallel_steps in this process (which must not have run a TensorFlow op yet), with the same
    replicas() and make_step() as a training run; each replica's canonical weights, and their count."""
    where = replicas(devices, "cpu")
    with where.engine.scope():
        net = alexnet(X.shape[-1])
        trainer = keras.optimizers.SGD(learning_rate=lr)
        trainer.build(net.trainable_variables)
    set_weights(net, weights)  # to every replica
    step = make_step(net, trainer, where)
    X, y = tf.constant(np.transpose(X, (0, 2, 3, 1))), tf.constant(y)  # NCHW to NHWC
    for i in range(0, len(y), batch_size):  # global minibatches, the last possibly smaller
        X_batch, y_batch = X[i:i + batch_size], y[i:i + batch_size]
        step(X_batch, y_batch, len(y_batch), training=False)  # dropout off
    plain = alexnet(X.shape[1])  # one replica's copies go through it to the canonical layouts
    results = []
    for rank in range(where.count):
        for v, mirrored in zip(plain.trainable_variables, net.trainable_variables):
            v.assign(where.engine.experimental_local_results(mirrored.value)[rank])
        results.append(get_weights(plain))
    close(where)
    return results, where.count


if __name__ == "__main__":
    serve("python -m tests.harness.tf_dp", _steps_here, sys.argv[1:])
