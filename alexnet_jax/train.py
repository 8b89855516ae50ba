"""Train the book's AlexNet on Fashion-MNIST with JAX (Flax NNX + Optax): `python -m alexnet_jax.train --help`."""

from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from alexnet_jax.data import DataIter, load_data_fashion_mnist, preprocess
from alexnet_jax.model import alexnet, get_weights, predict, set_weights
from alexnet_jax.parallel import close, make_step, replicas
from alexnet_jax.step import commit, evaluate_accuracy, fast_path, peak_memory
from common import training
from common.epoch import Epoch, Loop
from common.errors import UserError, run_cli
from common.fashion_mnist import FashionMNIST
from common.hparams import HParams
from common.metrics import fastest, versions
from common.replicas import Replicas, Step

BACKEND = "jax"
CKPT_EXT = "safetensors"  # the state flattened to named arrays: nothing in it can run code

# ---- The network and its trainer ----


def build(hp: HParams, replicas: Replicas) -> tuple[nnx.Sequential, nnx.Optimizer]:
    """The network, seeded, on the device (--fast: its fast path), and its SGD trainer (Optax, no momentum)."""
    with jax.default_device(replicas.device):  # --devices N: make_step then copies it to every replica
        net = alexnet(hp.resize, hp.seed)
        if hp.fast:
            net = fast_path(net, replicas.device)  # the same parameters, computing in bf16
        trainer = nnx.Optimizer(net, optax.sgd(hp.lr), wrt=nnx.Param)
    commit(net, trainer)  # placed as the step's outputs are: the step compiles once, not twice
    return net, trainer


def load_data(data: FashionMNIST, hp: HParams, replicas: Replicas) -> tuple[DataIter, DataIter]:
    """The run's iterators on the device: every whole minibatch, cut along the mesh for N replicas."""
    return load_data_fashion_mnist(data, hp.batch_size, hp.resize, replicas.device, hp.seed, replicas.engine)


# ---- The training loop ----


def _seed_dropout(net: nnx.Sequential, seed: int) -> None:
    """Restart the dropout layers' random streams from `seed` (an explicit key, held by the network)."""
    nnx.reseed(net, dropout=seed)  # each layer its own key drawn from it; the mask covers the whole minibatch


def train_epoch(net: nnx.Sequential, step: Step, train_iter: DataIter, epoch: Epoch) -> tuple[float, float, float]:
    """One pass over the training data (the rest of it, after a stop): mean loss, accuracy and seconds."""
    net.train()  # dropout on
    metric = jnp.asarray(epoch.sums, jnp.float32)  # summed loss, number correct (so far)

    def read() -> list[float]:  # the sums so far; waits for the device
        return np.asarray(train_iter.total(metric)).tolist()

    for i, (X, y, n) in epoch.minibatches(train_iter.shards()):  # --devices N: the minibatch cut along the mesh
        _seed_dropout(net, epoch.seed(i))  # dropout: the same masks on resume
        l, correct = step(X, y, n)
        metric += jnp.stack([l, correct])
        epoch.done(i, n, read)  # the bar, a curve point now and then, a checkpoint when stopped
    return epoch.means(read())


def train(net: nnx.Sequential, trainer: nnx.Optimizer, step: Step, train_iter: DataIter,
          test_iter: DataIter, loop: Loop) -> None:
    """Train for the run's remaining epochs, checkpointing after each (and where a stop lands)."""
    for epoch in loop.epochs(train_iter, lambda path, e: save_checkpoint(path, net, trainer, e)):
        train_iter.set_epoch(epoch.number, epoch.start_batch)  # this epoch's order, from where it stopped
        train_l, train_acc, train_time = train_epoch(net, step, train_iter, epoch)
        test_acc = evaluate_accuracy(net, test_iter)
        epoch.end(train_l, train_acc, train_time, test_acc)


# ---- Checkpoints ----


def _state(net: nnx.Sequential, trainer: nnx.Optimizer) -> dict:
    """What a checkpoint holds: the parameters and the optimizer's state (dropout is reseeded per minibatch)."""
    return {"net": nnx.state(net, nnx.Param), "trainer": nnx.state(trainer)}


def save_checkpoint(path: Path, net: nnx.Sequential, trainer: nnx.Optimizer, epoch: int) -> None:
    """Write the network and optimizer state, flattened to named arrays (the run directory makes it atomic)."""
    leaves = jax.tree_util.tree_leaves_with_path(_state(net, trainer))
    arrays = {jax.tree_util.keystr(name): np.asarray(leaf) for name, leaf in leaves}
    save_file(arrays, str(path), metadata={"epoch": str(epoch), "backend": BACKEND})


def load_checkpoint(path: Path, net: nnx.Sequential, trainer: nnx.Optimizer) -> int:
    """Restore a checkpoint (named arrays only, no code) and return its epoch."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            epoch = int(f.metadata()["epoch"])
            arrays = {name: f.get_tensor(name) for name in f.keys()}

        def restored(name: tuple, leaf: jax.Array) -> jax.Array:
            array = arrays[jax.tree_util.keystr(name)]
            if array.shape != leaf.shape:
                raise ValueError(f"{jax.tree_util.keystr(name)} has shape {array.shape}, not {leaf.shape}")
            return jax.device_put(array.astype(leaf.dtype), leaf.sharding)

        state = jax.tree_util.tree_map_with_path(restored, _state(net, trainer))
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as e:
        cause = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot load checkpoint {path} ({cause})") from None
    nnx.update(net, state["net"])
    nnx.update(trainer, state["trainer"])
    return epoch


# ---- Time estimate ----


def probe_speed(hp: HParams, replicas: Replicas) -> float:
    """Training images/s of the run's own step (--fast included): the faster of two minibatches, on a fresh network."""
    net, trainer = build(hp, replicas)
    step = make_step(net, trainer, replicas)
    with jax.default_device(replicas.device):
        X = jax.random.uniform(jax.random.key(0), (hp.batch_size, hp.resize, hp.resize, 1))
        y = jnp.zeros(hp.batch_size, jnp.int32)

        def one_step() -> None:
            step(X, y, hp.batch_size)[0].block_until_ready()  # waits for the device

        return hp.batch_size / fastest(one_step, repeats=2)  # after a warm-up step (and compiling)


# ---- Main ----


def describe(replicas: Replicas) -> dict:
    """What summary.json records about the framework: versions and peak memory."""
    return {"versions": {**versions("jax", jax.__version__), "flax": flax.__version__, "optax": optax.__version__},
            "memory": peak_memory(replicas.device)}


HOOKS = training.Hooks(BACKEND, CKPT_EXT, replicas, build, load_data, make_step, train, load_checkpoint,
                       probe_speed, get_weights, set_weights, preprocess, predict, describe, close)


def main(argv: list[str] | None = None) -> None:
    """Train with the book's settings (or the flags'), print the book's line, write the run."""
    training.main(HOOKS, argv)


if __name__ == "__main__":
    run_cli(main)
