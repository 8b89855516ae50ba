"""Train the book's AlexNet on Fashion-MNIST with TensorFlow: `python -m alexnet_tf.train --help`."""

import time
from pathlib import Path

import h5py
import keras
import tensorflow as tf

from alexnet_tf.data import DataIter, load_data_fashion_mnist
from alexnet_tf.model import alexnet, get_weights
from alexnet_tf.parallel import close, make_step, replicas
from alexnet_tf.step import evaluate_accuracy, fast_path, peak_memory
from common import training
from common.batches import epoch_seed
from common.errors import UserError, run_cli
from common.fashion_mnist import FashionMNIST
from common.hparams import HParams
from common.metrics import epoch_record, progress, versions
from common.replicas import Replicas, Step
from common.run import Run

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
    for i, layer in enumerate(dropouts):
        state = layer.seed_generator.state.value  # --devices N: a mirrored variable, one copy per replica
        for rank, copy in enumerate(net.distribute_strategy.experimental_local_results(state)):
            copy.assign([seed + i, rank])  # each replica its own masks (rank 0 alone: as on one device)


def train_epoch(net: keras.Sequential, step: Step, train_iter: DataIter, bar) -> tuple[float, float, float]:
    """One pass over the training data: mean loss, accuracy and seconds."""
    start = time.perf_counter()
    with tf.device(train_iter.device):
        metric = tf.zeros(2)  # summed loss, number correct
        for X, y, n in train_iter.shards():  # --devices N: the step cuts the minibatch of n into shares
            l, correct = step(X, y, n)
            metric += tf.stack([l, correct])
            bar.update(n)
    train_l, train_correct = train_iter.total(metric).numpy().tolist()  # all shards; waits for the device
    n = train_iter.num_examples
    return train_l / n, train_correct / n, time.perf_counter() - start


def train(net: keras.Sequential, trainer: keras.optimizers.Optimizer, step: Step, train_iter: DataIter,
          test_iter: DataIter, run: Run, no_progress: bool = False) -> None:
    """Train for the run's remaining epochs, checkpointing after each."""
    hp = run.hparams
    for epoch in range(run.start_epoch + 1, hp.num_epochs + 1):
        _seed_dropout(net, epoch_seed(hp.seed, epoch))  # dropout: repeatable on resume, per replica
        train_iter.set_epoch(epoch)
        start = time.perf_counter()
        with progress(train_iter.num_examples, epoch, hp.num_epochs, no_progress) as bar:
            train_l, train_acc, train_time = train_epoch(net, step, train_iter, bar)
        test_acc = evaluate_accuracy(net, test_iter)
        record = epoch_record(epoch, train_l, train_acc, test_acc, train_iter.num_examples,
                              train_time, time.perf_counter() - start)
        run.end_epoch(record, lambda path, epoch=epoch: save_checkpoint(path, net, trainer, epoch))


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
        raise UserError(f"cannot load checkpoint {path} ({str(e).splitlines()[0]}): "
                        f"start a new run with --force") from None
    return epoch


# ---- Time estimate ----


def probe_speed(hp: HParams, replicas: Replicas) -> float:
    """Training images/s of the run's own step (--fast included), timed on a fresh network and one minibatch."""
    net, trainer = build(hp, replicas)
    step = make_step(net, trainer, replicas)
    with tf.device(replicas.device):
        X = tf.random.uniform((hp.batch_size, hp.resize, hp.resize, 1))
        y = tf.zeros(hp.batch_size, dtype=tf.int64)
        step(X, y, hp.batch_size)  # warm-up (and tracing)
        start = time.perf_counter()
        step(X, y, hp.batch_size)[0].numpy()  # waits for the device
    return hp.batch_size / (time.perf_counter() - start)


# ---- Main ----


def describe(replicas: Replicas) -> dict:
    """What summary.json records about the framework: versions and peak memory."""
    return {"versions": {**versions("tensorflow", tf.__version__), "keras": keras.__version__},
            "memory": peak_memory(replicas.device)}


HOOKS = training.Hooks(BACKEND, CKPT_EXT, replicas, build, load_data, make_step, train, load_checkpoint,
                       probe_speed, get_weights, describe, close)


def main(argv: list[str] | None = None) -> None:
    """Train with the book's settings (or the flags'), print the book's line, write the run."""
    training.main(HOOKS, argv)


if __name__ == "__main__":
    run_cli(main)
