"""The book's AlexNet in TensorFlow (Keras 3).

Its files, read in this order (each imports only those before it): model.py, data.py, step.py,
parallel.py, train.py, predict.py, bench.py.
"""

import os
import sys

from common.backends import require

require("tf")  # one clear line, not a traceback, where the framework is missing or too old

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow
os.environ["KERAS_BACKEND"] = "tensorflow"  # this package is the TensorFlow backend, whatever the shell says
# TensorFlow's own thread pool ignores OMP_NUM_THREADS, each process's share of the cores (common.launch, as
# torchrun sets it); it reads TF_NUM_INTRAOP_THREADS, unless the user set that one (docs/results.md: CI time).
if "OMP_NUM_THREADS" in os.environ:
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", os.environ["OMP_NUM_THREADS"])


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow and find its devices with stderr muted, so that a bad command line prints one line.

    TensorFlow 2.21 logs through absl before absl is initialised, and such lines (the oneDNN
    note, CUDA probing) ignore TF_CPP_MIN_LOG_LEVEL; so does the error line of PyPI's `tensorflow`,
    a CUDA build, on a machine without a GPU ("failed call to cuInit"), written when it first lists
    its devices. `--device gpu` says in one line when there is none; an import error still propagates.
    """
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow

        tensorflow.config.list_physical_devices()  # once per process: later calls print nothing
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_tensorflow_quietly()
