"""The book's AlexNet in JAX with Flax NNX and Optax: model.py, data.py, step.py, parallel.py, train.py."""

import os

from common.backends import require

require("jax")  # one clear line, not a traceback, where the framework is missing or too old

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # XLA's C++ logging, before anything imports JAX
