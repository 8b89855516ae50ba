"""The book's AlexNet in JAX with Flax NNX and Optax.

Its files, read in this order (each imports only those before it): model.py, data.py, step.py,
parallel.py, train.py, predict.py, bench.py.
"""

import os
from importlib.metadata import version

from common.backends import require

require("jax")  # one clear line, not a traceback, where the framework is missing or too old

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # XLA's C++ logging, before anything imports JAX

# jaxlib 0.10 to 0.12's XLA hands CPU convolutions to YNNPACK, whose weight gradients are slow here: XLA's own
# convolutions trained AlexNet 1.6 to 1.8x faster on a 2-core CPU (docs/results.md). Only on the releases
# measured: an XLA that does not know the flag stops at its start. A choice in XLA_FLAGS wins.
YNN_OFF_JAXLIBS = ("0.10.", "0.11.", "0.12.")
if version("jaxlib").startswith(YNN_OFF_JAXLIBS) and "ynn_fusion_type" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_experimental_ynn_fusion_type=-individual_convolution").strip()
