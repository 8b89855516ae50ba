"""Neutral weights from any backend as an ONNX model, through torch.onnx (PyTorch's alone: see README, Export).

    python -m alexnet_torch.export W model.onnx [--opset N]

The model takes images already brought to the network's input, float32 (B, 1, resize, resize) in
[0, 1] (input "X", any batch size B), and gives the logits (B, 10) (output "logits"), dropout off.
The input side is the one the weights file records. Needs the export extra: pip install '.[export]'.
"""

import argparse
import importlib.util
import io
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from alexnet_torch.model import alexnet, set_weights
from common.atomic import atomic_write_bytes
from common.errors import Help, Parser, UserError, path_arg, positive_int, run_cli
from common.hparams import IN_CHANNELS
from common.spec import check_resize
from common.weights import load_weights, read_metadata, weights_file

BACKEND = "torch"
OPSETS = range(9, 21)  # what the TorchScript exporter writes for these layers (9: Flatten of any batch)
DEFAULT_OPSET = 17  # run by onnxruntime 1.13 and later
EXTRA = "pip install '.[export]' (onnx, onnxruntime)"

# ---- The weights' input side ----


def weights_info(path: Path) -> tuple[int, str]:
    """The input side a neutral weights file records in its metadata, and the backend that wrote it."""
    meta = read_metadata(path)
    try:
        resize = int(meta["resize"])
        check_resize(resize)
    except (KeyError, ValueError):
        raise UserError(f"{path} does not record a valid input size in its metadata (resize: "
                        f"{meta.get('resize')!r}): export a run's weights.safetensors, which records it") from None
    return resize, meta.get("backend", "unknown")


def load_net(path: Path, resize: int) -> nn.Sequential:
    """The network at input side `resize` with the file's weights, in evaluation mode (dropout off)."""
    net = alexnet(resize)
    set_weights(net, load_weights(path, resize))
    return net.eval()


# ---- ONNX ----


def require_onnx() -> None:
    """Stop with one line naming the extra when this Python has no onnx."""
    if importlib.util.find_spec("onnx") is None:
        raise UserError(f"ONNX export needs the onnx package, which {sys.executable} does not have: {EXTRA}")


def to_onnx(net: nn.Sequential, resize: int, opset: int) -> bytes:
    """The network as an ONNX model: input "X" (B, 1, resize, resize), output "logits" (B, 10), B free."""
    X = torch.zeros(1, IN_CHANNELS, resize, resize)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter: no onnxscript needed (the dynamo one needs it)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (X,), buffer, input_names=["X"], output_names=["logits"],
                          dynamic_axes={"X": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    return buffer.getvalue()


def describe(model: bytes, resize: int, source: str) -> bytes:
    """The model checked by onnx, with what it expects recorded in its metadata."""
    import onnx

    proto = onnx.load_from_string(model)
    proto.doc_string = (f"AlexNet (d2l.ai 8.1) for Fashion-MNIST: X float32 (B, 1, {resize}, {resize}) in [0, 1], "
                        f"bilinear-resized from 28x28; logits (B, 10)")
    for key, value in {"resize": str(resize), "weights_backend": source}.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def export(weights: Path, out: Path, opset: int = DEFAULT_OPSET) -> int:
    """Write the ONNX model of a neutral weights file to `out` atomically; return its input side."""
    require_onnx()
    if opset not in OPSETS:
        raise UserError(f"--opset {opset} is not one this exporter writes: pick {OPSETS[0]} to {OPSETS[-1]}")
    if out.is_dir():
        raise UserError(f"{out} is a directory: give the model's file name, for example {out / 'model.onnx'}")
    resize, source = weights_info(weights)
    model = describe(to_onnx(load_net(weights, resize), resize, opset), resize, source)
    try:
        atomic_write_bytes(out, model)
    except OSError as e:
        raise UserError(f"cannot write {out} ({e.strerror or e}): pick a writable path") from None
    return resize


# ---- Command line ----


def parser() -> argparse.ArgumentParser:
    """The export command's parser."""
    p = Parser(prog=f"python -m alexnet_{BACKEND}.export", formatter_class=Help,
                description="Write an ONNX model from neutral weights trained in any backend.")
    p.add_argument("weights", type=weights_file, help="neutral weights (a run's weights.safetensors, or its directory)")
    p.add_argument("out", type=path_arg, help="the ONNX file to write, for example model.onnx")
    p.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET, help="ONNX opset version")
    return p


def main(argv: list[str] | None = None) -> None:
    """Export, and say what the model expects."""
    args = parser().parse_args(argv)
    resize = export(args.weights, args.out, args.opset)
    print(f"wrote {args.out}: input X float32 (batch, 1, {resize}, {resize}) in [0, 1], output logits (batch, 10), "
          f"opset {args.opset}")


if __name__ == "__main__":
    run_cli(main)
