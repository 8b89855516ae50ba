"""Train the book's AlexNet on Fashion-MNIST with TensorFlow: `python -m alexnet_tf.train --help`."""

from dataclasses import replace
from pathlib import Path

import h5py
import keras
import tensorflow as tf

from alexnet_tf.data import DataIter, load_data_fashion_mnist, preprocess
from alexnet_tf.model import alexnet, get_weights, predict, set_weights
from alexnet_tf.parallel import close, make_step, replicas
from alexnet_tf.step import evaluate_accuracy, fast_path, peak_memory
from common import training
from common.epoch import Epoch, Loop
from common.errors import UserError, run_cli
from common.fashion_mnist import FashionMNIST
from common.hparams import HParams
from common.metrics import fastest, versions
from common.replicas import Replicas, Step

BACKEND = "tf"
CKPT_EXT = "weights.h5"  # Keras 3 insists on this suffix for save_weights

# ---- The network and its trainer ----


def build(hp: HParams, replicas: Replicas) -> tuple[keras.Sequential, keras.optimizers.Optimizer]:
    """The network, seeded, on the device (--fast: its fast path), and its SGD trainer; mirrored on N replicas."""
    keras.utils.set_random_seed(hp.seed)
    with replicas.engine.scope(), tf.device(replicas.device):  # --devices N: every variable on each replica
        net = alexnet(hp.resize)
        if hp.fast:
            net = fast_path(net, replicas.device)  # a copy, with the same weights
        trainer = keras.optimizers.SGD(learning_rate=hp.lr)
        trainer.build(net.trainable_variables)
    return net, trainer


def load_data(data: FashionMNIST, hp: HParams, replicas: Replicas) -> tuple[DataIter, DataIter]:
    """The run's iterators on the device: every whole minibatch (the strategy shares it out)."""
    return load_data_fashion_mnist(data, hp.batch_size, hp.resize, replicas.device, hp.seed)


# ---- The training loop ----


def _seed_dropout(net: keras.Sequential, seed: int) -> None:
    """Restart each dropout layer's random stream from `seed` (Keras keeps it in a variable)."""
    dropouts = [layer for layer in net.layers if isinstance(layer, keras.layers.Dropout)]
    worker = getattr(net.distribute_strategy.cluster_resolver, "task_id", None) or 0  # several workers: which
    for i, layer in enumerate(dropouts):
        state = layer.seed_generator.state.value  # --devices N: a mirrored variable, one copy per replica
        copies = net.distribute_strategy.experimental_local_results(state)  # this worker's replicas
        for rank, copy in enumerate(copies, start=worker * len(copies)):
            copy.assign([seed + i, rank])  # each replica its own masks (rank 0 alone: as on one device)


def train_epoch(net: keras.Sequential, step: Step, train_iter: DataIter, epoch: Epoch) -> tuple[float, float, float]:
    """One pass over the training data (the rest of it, after a stop): mean loss, accuracy and seconds."""
    with tf.device(train_iter.device):
        metric = tf.constant(epoch.sums, tf.float32)  # summed loss, number correct (so far)

    def read() -> list[float]:  # the sums so far; waits for the device
        return train_iter.total(metric).numpy().tolist()

    for i, (X, y, n) in epoch.minibatches(train_iter.shards()):  # --devices N: the step shares out the n
        _seed_dropout(net, epoch.seed(i))  # dropout: the same masks on resume, per replica
        with tf.device(train_iter.device):
            l, correct = step(X, y, n)
            metric += tf.stack([l, correct])
        epoch.done(i, n, read)  # the bar, a curve point now and then, a checkpoint when stopped
    return epoch.means(read())


def train(net: keras.Sequential, trainer: keras.optimizers.Optimizer, step: Step, train_iter: DataIter,
          test_iter: DataIter, loop: Loop) -> None:
    """Train for the run's remaining epochs, checkpointing after each (and where a stop lands)."""
    for epoch in loop.epochs(train_iter, lambda path, e: save_checkpoint(path, net, trainer, e)):
        train_iter.set_epoch(epoch.number, epoch.start_batch)  # this epoch's order, from where it stopped
        train_l, train_acc, train_time = train_epoch(net, step, train_iter, epoch)
        test_acc = evaluate_accuracy(net, test_iter)
        epoch.end(train_l, train_acc, train_time, test_acc)


# ---- Checkpoints ----


def save_checkpoint(path: Path, net: keras.Sequential, trainer: keras.optimizers.Optimizer,
                    epoch: int) -> None:
    """Write the network and optimizer state (the run directory makes it atomic)."""
    net.save_weights(path)  # Keras's native .weights.h5
    with h5py.File(path, "a") as f:  # beside it: the optimizer's variables and the epoch
        trainer.save_own_variables(f.create_group("trainer"))
        f.attrs["epoch"] = epoch


def load_checkpoint(path: Path, net: keras.Sequential, trainer: keras.optimizers.Optimizer) -> int:
    """Restore a checkpoint (weights and arrays only, no code) and return its epoch."""
    try:
        net.load_weights(path)
        with h5py.File(path, "r") as f:
            trainer.build(net.trainable_variables)
            trainer.load_own_variables({k: v[()] for k, v in f["trainer"].items()})
            epoch = int(f.attrs["epoch"])
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"cannot load checkpoint {path} ({str(e).splitlines()[0]})") from None
    return epoch


# ---- Time estimate ----


def probe_speed(hp: HParams, replicas: Replicas) -> float:
    """Training images/s of the run's own step (--fast included): the faster of two minibatches, on a fresh network."""
    if replicas.processes > 1:  # each worker alone: one replica, a whole minibatch (in the run, its share)
        speed = probe_speed(hp, replace(replicas, count=1, processes=1, engine=tf.distribute.get_strategy()))
        return speed * replicas.processes
    net, trainer = build(hp, replicas)
    step = make_step(net, trainer, replicas)
    with tf.device(replicas.device):
        X = tf.random.uniform((hp.batch_size, hp.resize, hp.resize, 1))
        y = tf.zeros(hp.batch_size, dtype=tf.int64)

        def one_step() -> None:
            step(X, y, hp.batch_size)[0].numpy()  # waits for the device

        return hp.batch_size / fastest(one_step, repeats=2)  # after a warm-up step (and tracing)


# ---- Main ----


def describe(replicas: Replicas) -> dict:
    """What summary.json records about the framework: versions and peak memory."""
    return {"versions": {**versions("tensorflow", tf.__version__), "keras": keras.__version__},
            "memory": peak_memory(replicas.device)}


HOOKS = training.Hooks(BACKEND, CKPT_EXT, replicas, build, load_data, make_step, train, load_checkpoint,
                       probe_speed, get_weights, set_weights, preprocess, predict, describe, close)


def main(argv: list[str] | None = None) -> None:
    """Train with the book's settings (or the flags'), print the book's line, write the run."""
    training.main(HOOKS, argv)


if __name__ == "__main__":
    run_cli(main)
