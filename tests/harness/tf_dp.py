"""TensorFlow's side of the data-parallel test: one fresh process drives every replica, or common.launch
starts several workers (as on several machines), each told its place by TF_CONFIG; files in, files out."""

import sys

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.model import alexnet, get_weights, set_weights
from alexnet_tf.parallel import close, launch_command, make_step, replicas
from common.replicas import Replicas
from tests.harness.exchange import read_steps, steps_in_subprocess, write_replica


def data_parallel_steps(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, lr: float,
                        batch_size: int, devices: int,
                        processes: int = 1) -> tuple[list[dict[str, np.ndarray]], list[int]]:
    """SGD once over X, y in order on `devices` CPU replicas in `processes` processes, dropout off; each
    replica's weights and count."""
    # Fresh processes: virtual CPU devices cannot be made once this one has run TensorFlow.
    return steps_in_subprocess(launch_command(devices, "tests.harness.tf_dp", processes), weights, X, y, lr,
                               batch_size, devices)


def _steps_here(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, lr: float, batch_size: int,
                devices: int) -> tuple[list[dict[str, np.ndarray]], Replicas]:
    """data_parallel_steps in this process (which must not have run a TensorFlow op yet), with the same
    replicas() and make_step() as a training run; the canonical weights of each replica it holds."""
    where = replicas(devices, "cpu")
    with where.engine.scope():
        net = alexnet(X.shape[-1])
        trainer = keras.optimizers.SGD(learning_rate=lr)
        trainer.build(net.trainable_variables)
    set_weights(net, weights)  # to every replica this process holds
    step = make_step(net, trainer, where)
    X, y = tf.constant(np.transpose(X, (0, 2, 3, 1))), tf.constant(y)  # NCHW to NHWC
    for i in range(0, len(y), batch_size):  # global minibatches, the last possibly smaller
        X_batch, y_batch = X[i:i + batch_size], y[i:i + batch_size]
        step(X_batch, y_batch, len(y_batch), training=False)  # dropout off
    plain = alexnet(X.shape[1])  # one replica's copies go through it to the canonical layouts
    results = []
    for local in range(len(where.engine.extended.worker_devices)):  # this process's replicas
        for v, mirrored in zip(plain.trainable_variables, net.trainable_variables):
            v.assign(where.engine.experimental_local_results(mirrored.value)[local])
        results.append(get_weights(plain))
    close(where)
    return results, where


def _worker(argv: list[str] | None = None) -> None:
    """One process (of one or several): its replicas' weights, each under its place among all the replicas."""
    args, weights, X, y = read_steps("python -m tests.harness.tf_dp", argv)
    results, where = _steps_here(weights, X, y, args.lr, args.batch_size, args.devices)
    first = where.rank * len(results)  # every worker holds as many replicas
    for i, replica in enumerate(results):
        write_replica(args.dir, first + i, replica, X.shape[-1], where.count)


if __name__ == "__main__":
    _worker(sys.argv[1:])
