"""The book's AlexNet in PyTorch: model.py, data.py, step.py, parallel.py, train.py."""

from common.backends import require

require("torch")  # one clear line, not a traceback, where the framework is missing or too old
