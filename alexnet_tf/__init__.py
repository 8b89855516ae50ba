"""The book's AlexNet in TensorFlow (Keras 3): model.py, data.py, train.py."""

import os

# Before anything imports TensorFlow: keep its C++ start-up chatter (oneDNN, CUDA probing) off
# stderr, so that a bad command line prints exactly one line.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BACKEND"] = "tensorflow"  # this package is the TensorFlow backend, whatever the shell says
