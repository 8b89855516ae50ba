"""Train the book's AlexNet on Fashion-MNIST with MXNet: `python -m alexnet_mxnet.train --help`."""

from dataclasses import replace
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import gluon, npx
from mxnet.gluon import nn

from alexnet_mxnet.data import DataIter, load_data_fashion_mnist, preprocess
from alexnet_mxnet.model import alexnet, get_weights, predict, set_weights
from alexnet_mxnet.parallel import close, make_step, replicas, replicate
from alexnet_mxnet.step import evaluate_accuracy, fast_path, peak_memory
from common import training
from common.epoch import Epoch, Loop
from common.errors import UserError, run_cli
from common.fashion_mnist import FashionMNIST
from common.hparams import HParams
from common.metrics import fastest, versions
from common.replicas import Replicas, Step

npx.set_np()

BACKEND = "mxnet"
CKPT_EXT = "params"

# ---- The network and its trainer ----


def build(hp: HParams, replicas: Replicas) -> tuple[nn.HybridSequential, gluon.Trainer]:
    """The network, seeded, on every replica's context (--fast: its fast path), and its SGD trainer."""
    mx.random.seed(hp.seed)
    net = alexnet(hp.resize, replicas.device)
    if hp.fast:
        net = fast_path(net, replicas.device)  # the same float32 network: MXNet 1.9.1 has no faster bf16 path
    replicate(net, replicas)  # --devices N: a copy of every weight on each context
    # kvstore 'device' sums the replicas' gradients (on the GPUs, when there are GPUs); one context needs none.
    # Several worker processes: the dist_sync store (parallel.replicas made it) sums the workers' gradients too.
    engine = replicas.engine
    return net, gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": hp.lr}, kvstore=engine.kvstore,
                              update_on_kvstore=engine.update_on_kvstore)


def load_data(data: FashionMNIST, hp: HParams, replicas: Replicas) -> tuple[DataIter, DataIter]:
    """The run's iterators on the first replica's device: this process's share of minibatches, sharded by the step."""
    return load_data_fashion_mnist(data, hp.batch_size, hp.resize, replicas.device, hp.seed, replicas.rank,
                                   replicas.processes, replicas.engine.total)


# ---- The training loop ----


def train_epoch(net: nn.HybridSequential, step: Step, train_iter: DataIter, epoch: Epoch) -> tuple[float, float, float]:
    """One pass over the training data (the rest of it, after a stop): mean loss, accuracy and seconds."""
    metric = mx.np.array(epoch.sums, dtype=np.float32, ctx=train_iter.device)  # summed loss, number correct (so far)

    def read() -> list[float]:  # the sums so far; waits for the device
        return train_iter.total(metric).tolist()

    queued = mx.np.zeros(())  # the previous step's loss
    for i, (X, y, n) in epoch.minibatches(train_iter.shards()):  # --devices N: the step shards the n
        mx.random.seed(epoch.seed(i))  # dropout: the same masks on resume
        l, correct = step(X, y, n)
        metric += mx.np.stack([l, correct.astype(np.float32)])
        # MXNet runs the steps asynchronously; let it queue one step ahead, no further, so that
        # the bar shows work done and a stop lands on the minibatch it says.
        queued.wait_to_read()
        queued = l
        epoch.done(i, n, read)  # the bar, a curve point now and then, a checkpoint when stopped
    npx.waitall()  # MXNet computes asynchronously: wait for the last step before reading the clock
    return epoch.means(read())


def train(net: nn.HybridSequential, trainer: gluon.Trainer, step: Step, train_iter: DataIter,
          test_iter: DataIter, loop: Loop) -> None:
    """Train for the run's remaining epochs, checkpointing after each (and where a stop lands)."""
    for epoch in loop.epochs(train_iter, lambda path, e: save_checkpoint(path, net, trainer, e)):
        train_iter.set_epoch(epoch.number, epoch.start_batch)  # this epoch's order, from where it stopped
        train_l, train_acc, train_time = train_epoch(net, step, train_iter, epoch)
        test_acc = evaluate_accuracy(net, test_iter)
        epoch.end(train_l, train_acc, train_time, test_acc)


# ---- Checkpoints ----

# The trainer's state goes into the same file as arrays, never pickled (Trainer.save_states pickles), under
# each parameter's name in the file (0.weight, ...): the Trainer's own indices follow Gluon's global layer
# counters (conv5_weight sorts after conv15_weight), which differ from one network to the next.
#   trainer.num_update              (1,) int64: the optimizer's step count
#   trainer.count.<device>.<name>   (1,) int64: a parameter's update count, as the optimizer keeps it per device
#   trainer.state.<updater>.<name>  a parameter's state array, where the optimizer keeps one (not plain SGD)
# The learning rate is in the run's settings.


def _updaters(trainer: gluon.Trainer) -> list:
    """The trainer's updaters: the kvstore's one (--devices N) or one per context."""
    if not trainer._kv_initialized:  # Gluon makes its kvstore at the first step
        trainer._init_kvstore()
    return [trainer._kvstore._updater] if trainer._update_on_kvstore else trainer._updaters


def _param_names(net: nn.HybridSequential, trainer: gluon.Trainer) -> list[str]:
    """The name in the checkpoint (as save_parameters writes it) of each of the trainer's parameters, by index."""
    names = {id(param): name for name, param in net._collect_params_with_prefix().items()}
    return [names[id(param)] for param in trainer._params]


def _trainer_arrays(net: nn.HybridSequential, trainer: gluon.Trainer) -> dict[str, mx.np.ndarray]:
    """The optimizer's update counts and per-parameter states, as named arrays; a UserError for any other state."""
    optimizer, names = trainer._optimizer, _param_names(net, trainer)
    arrays = {"trainer.num_update": mx.np.array([optimizer.num_update], dtype=np.int64)}
    for device_id, counts in optimizer._all_index_update_counts.items():
        for index, count in counts.items():
            arrays[f"trainer.count.{device_id}.{names[index]}"] = mx.np.array([count], dtype=np.int64)
    for u, updater in enumerate(_updaters(trainer)):
        for index, state in updater.states.items():
            if state is None:  # plain SGD: nothing kept between steps
                continue
            if not isinstance(state, mx.nd.NDArray):
                raise UserError(f"cannot checkpoint the optimizer {type(optimizer).__name__}: its state for "
                                f"{names[index]} is a {type(state).__name__}, not one array (only pickle "
                                f"could store it, and checkpoints are never pickled)")
            arrays[f"trainer.state.{u}.{names[index]}"] = state.as_np_ndarray().copyto(mx.cpu())
    return arrays


def _restore_trainer(net: nn.HybridSequential, trainer: gluon.Trainer, arrays: dict[str, mx.np.ndarray]) -> None:
    """Put back what _trainer_arrays() stored: the update counts and per-parameter states."""
    optimizer = trainer._optimizer
    index = {name: i for i, name in enumerate(_param_names(net, trainer))}
    optimizer.num_update = int(arrays["trainer.num_update"].item())
    optimizer._all_index_update_counts.clear()
    for key, value in arrays.items():
        if key.startswith("trainer.count."):
            device_id, name = key.removeprefix("trainer.count.").split(".", 1)
            optimizer._all_index_update_counts.setdefault(int(device_id), {})[index[name]] = int(value.item())
    optimizer._set_current_context(0)  # the updaters choose the device again before each update
    for u, updater in enumerate(_updaters(trainer)):
        prefix = f"trainer.state.{u}."
        updater.states = {index[key.removeprefix(prefix)]: value.as_nd_ndarray()
                          for key, value in arrays.items() if key.startswith(prefix)}
        updater.states_synced = dict.fromkeys(updater.states, False)  # moved to each weight's context on use


def save_checkpoint(path: Path, net: nn.HybridSequential, trainer: gluon.Trainer, epoch: int) -> None:
    """Write the network's parameters, the trainer's state and the epoch (the run directory makes it atomic)."""
    net.save_parameters(str(path))  # Gluon's format: arrays only, named 0.weight, 0.bias, ...
    extra = {**_trainer_arrays(net, trainer), "epoch": mx.np.array([epoch])}
    npx.save(str(path), {**npx.load(str(path)), **extra})


def load_checkpoint(path: Path, net: nn.HybridSequential, trainer: gluon.Trainer) -> int:
    """Restore a checkpoint safely (arrays only, nothing unpickled) and return its epoch."""
    try:
        net.load_parameters(str(path), ctx=net.collect_params().list_ctx(), ignore_extra=True)
        arrays = npx.load(str(path))
        _restore_trainer(net, trainer, arrays)
        epoch = int(arrays["epoch"].item())
    except (OSError, ValueError, KeyError, AssertionError, mx.base.MXNetError) as e:
        cause = str(e).strip().splitlines()[-1]  # MXNet's messages end with the cause, after its traceback
        raise UserError(f"cannot load checkpoint {path} ({cause})") from None
    return epoch


# ---- Time estimate ----


def probe_speed(hp: HParams, replicas: Replicas) -> float:
    """Training images/s of the run's own step (--fast included): the faster of two minibatches, on a fresh network."""
    replicas = replace(replicas, engine=replicas.engine.alone())  # each worker alone: the others take no part
    net, trainer = build(hp, replicas)  # fresh: the speed does not depend on the weights
    step = make_step(net, trainer, replicas)
    X = mx.np.random.uniform(size=(hp.batch_size, 1, hp.resize, hp.resize), ctx=replicas.device)
    y = mx.np.zeros(hp.batch_size, dtype=np.int64, ctx=replicas.device)

    def one_step() -> None:
        step(X, y, hp.batch_size)
        npx.waitall()  # MXNet computes asynchronously: wait for the step

    return hp.batch_size / fastest(one_step, repeats=2)  # after a warm-up step


# ---- Main ----


def describe(replicas: Replicas) -> dict:
    """What summary.json records about the framework: versions and peak memory."""
    return {"versions": versions("mxnet", mx.__version__), "memory": peak_memory(replicas.device)}


def _replica_weights(net: nn.HybridSequential) -> dict[str, np.ndarray]:
    """The canonical weights of the replica on replicas.device: the first context (replicate() keeps their order)."""
    with net.collect_params().list_ctx()[0]:  # on several contexts, Parameter.data() reads the current one's copy
        return get_weights(net)


HOOKS = training.Hooks(BACKEND, CKPT_EXT, replicas, build, load_data, make_step, train, load_checkpoint,
                       probe_speed, _replica_weights, set_weights, preprocess, predict, describe, close)


def main(argv: list[str] | None = None) -> None:
    """Train with the book's settings (or the flags'), print the book's line, write the run."""
    training.main(HOOKS, argv)


if __name__ == "__main__":
    run_cli(main)
