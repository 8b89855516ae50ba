"""The book's AlexNet in MXNet (Gluon, NumPy interface): model.py, data.py, step.py, parallel.py, train.py."""

from common.backends import require

require("mxnet")  # one clear line, not a traceback, where the framework is missing or too old
