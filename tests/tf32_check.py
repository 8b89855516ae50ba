"""On a GPU, how far the faithful network's logits land from the CPU's: TF32 off (as get_device leaves it), then on.

    python -m tests.tf32_check torch jax      (.ci/gpu runs it on the lent GPU machine)

The measurement behind each backend's `step.no_tf32` on real hardware: TF32 keeps 10 bits of mantissa where
float32 keeps 23, so the two figures should lie orders of magnitude apart. Without a GPU it compares the CPU
with itself.
"""

import argparse
import importlib

import numpy as np

from common.parity import make_case, weights_of

RESIZE = 224  # the book's input: every layer at its real size
BATCH = 32


def framework_default(backend: str) -> None:
    """Each framework's own TF32 setting again, as a run had it before the backends turned TF32 off."""
    if backend == "torch":
        import torch

        torch.backends.cudnn.allow_tf32 = True  # its default: convolutions in TF32, matrix products not
    elif backend == "tf":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(True)
    elif backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", None)
    else:  # MXNet's NVIDIA_TF32_OVERRIDE is read as NVIDIA's libraries start: not undone in a running process
        raise SystemExit(f"{backend}: only torch, tf and jax can turn TF32 back on in the same process")


def logits(backend: str, case: dict[str, np.ndarray], device: object) -> np.ndarray:
    """The backend's logits of the case's images on `device`, from the case's weights."""
    model, data, predict = (importlib.import_module(f"alexnet_{backend}.{m}") for m in ("model", "data", "predict"))
    net = predict.load_net(weights_of(case), RESIZE, device)
    return model.predict(net, data.preprocess(case["images"], RESIZE, device))


def main() -> None:
    """Print, per backend, the logits' largest difference from the CPU's with TF32 off and with the default."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backends", nargs="+", choices=["torch", "tf", "jax"])
    for backend in parser.parse_args().backends:
        step = importlib.import_module(f"alexnet_{backend}.step")
        case = make_case(RESIZE, batch=BATCH)
        cpu = logits(backend, case, step.get_device("cpu"))
        device = step.get_device("auto")  # a GPU where there is one: TF32 off
        off = logits(backend, case, device)
        framework_default(backend)
        on = logits(backend, case, device)
        off_cpu, on_cpu = (np.abs(X - cpu).max() / np.abs(cpu).max() for X in (off, on))
        print(f"{backend} on {step.device_name(device)}, {RESIZE}x{RESIZE}, batch {BATCH}: the logits' largest "
              f"difference from the CPU's, relative to the largest logit: {off_cpu:.1e} with TF32 off, "
              f"{on_cpu:.1e} with the framework's default", flush=True)


if __name__ == "__main__":
    main()
