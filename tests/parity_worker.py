"""One backend's side of `nox -s parity` and `nox -s export`, run in that backend's venv; reads and writes NumPy files.

    python -m tests.parity_worker step --backend torch --case CASE --out RESULT
    python -m tests.parity_worker evaluate --backend tf --weights W [W ...] --data DIR --resize N --out JSON
    python -m tests.parity_worker case --resize N --case CASE --weights W   (framework-free: a case and its weights)
    python -m tests.parity_worker logits --backend tf --weights W --case CASE --resize N --out RESULT
    python -m tests.parity_worker onnx --backend torch --model M --case CASE --resize N --against RESULT ...
"""

import argparse
import importlib
import json
import sys
from pathlib import Path

import numpy as np

from common import parity
from common.fashion_mnist import load as load_data
from common.weights import load_weights, save_weights


def step(fw, case_path: Path, out: Path, resize: int, lr: float) -> None:
    """Resize the case's images, then logits, loss and one SGD step (dropout off) from its weights."""
    case = parity.load(case_path)
    device = fw.step.get_device("cpu")
    pixels = fw.data.preprocess(case["images"], resize, device)
    net = fw.model.alexnet(resize)
    fw.model.set_weights(net, parity.weights_of(case))
    logits = fw.model.predict(net, pixels)
    loss = fw.step.sgd_step(net, pixels, case["labels"], lr, dropout=False)
    after = {f"after.{k}": v for k, v in fw.model.get_weights(net).items()}
    parity.save(out, {"pixels": pixels, "logits": logits, "loss": np.array([loss], np.float64), **after})


def evaluate(fw, weights: list[Path], data_dir: Path, resize: int, out: Path) -> None:
    """Test accuracy and predictions of each neutral weights file on an IDX test split, in the order given.

    One process for all the files: `nox -s parity` evaluates each backend's weights in each backend, and a
    process per pair spent most of its time starting the framework.
    """
    data = load_data(data_dir)
    net = fw.model.alexnet(resize)
    pixels = fw.data.preprocess(data.test_images, resize, fw.step.get_device("cpu"))
    results = []
    for path in weights:
        fw.model.set_weights(net, load_weights(path, resize))
        predictions = fw.model.predict(net, pixels).argmax(axis=1)
        results.append({"weights": str(path), "accuracy": float((predictions == data.test_labels).mean()),
                        "predictions": predictions.tolist()})
    out.write_text(json.dumps(results))


def case(case_path: Path, weights: Path, resize: int, batch: int) -> None:
    """A parity case, and its weights as a neutral file (what a run writes, as export and predict read)."""
    made = parity.make_case(resize, batch, seed=resize)
    parity.save(case_path, made)
    save_weights(weights, parity.weights_of(made), resize, backend="parity")


def logits(fw, weights: Path, case_path: Path, resize: int, out: Path) -> None:
    """The backend's pixels and logits (dropout off) of the case's images, from a neutral weights file."""
    images = parity.load(case_path)["images"]
    pixels = fw.data.preprocess(images, resize, fw.step.get_device("cpu"))
    net = fw.model.alexnet(resize)
    fw.model.set_weights(net, load_weights(weights, resize))
    parity.save(out, {"pixels": pixels, "logits": fw.model.predict(net, pixels)})


def onnx_check(fw, model: Path, case_path: Path, resize: int, against: list[Path]) -> int:
    """Run the ONNX model with onnxruntime on the backend's pixels; print and check it against each result."""
    import onnxruntime

    pixels = fw.data.preprocess(parity.load(case_path)["images"], resize, fw.step.get_device("cpu"))
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"X": pixels})[0]
    print(f"== ONNX (onnxruntime {onnxruntime.__version__}) at input {resize}, batch {len(pixels)}, against "
          f"each backend's logits on the same weights and images (relative limit {parity.LOGITS_RTOL:g})")
    failed = 0
    for path in against:
        reference = parity.load(path)["logits"].astype(np.float64)
        if reference.shape != got.shape:
            raise SystemExit(f"{path}: logits of shape {reference.shape}, the ONNX model gave {got.shape}")
        diff = float(np.max(np.abs(got - reference)))
        rel = diff / max(float(np.max(np.abs(reference))), 1e-30)
        ok = rel <= parity.LOGITS_RTOL
        failed += not ok
        print(f"{path.stem:<14}max abs diff {diff:.3e}  relative {rel:.3e}  {'ok' if ok else 'FAIL'}")
    return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    """The worker's commands and their arguments."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("command", choices=["step", "evaluate", "case", "logits", "onnx"])
    p.add_argument("--backend")
    p.add_argument("--case", type=Path)
    p.add_argument("--weights", type=Path, nargs="+", default=[])
    p.add_argument("--data", type=Path)
    p.add_argument("--resize", type=int, required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--out", type=Path)
    p.add_argument("--model", type=Path)
    p.add_argument("--against", type=Path, nargs="+", default=[])
    return p


def one(weights: list[Path]) -> Path:
    """The one weights file that `case` and `logits` take."""
    if len(weights) != 1:
        raise SystemExit(f"this command takes one --weights file, got {len(weights)}")
    return weights[0]


def main() -> int:
    """Parse the command and run it with the named backend."""
    args = parser().parse_args()
    if args.command == "case":
        case(args.case, one(args.weights), args.resize, args.batch)
        return 0
    fw = argparse.Namespace(**{m: importlib.import_module(f"alexnet_{args.backend}.{m}")
                               for m in ("model", "data", "step")})
    if args.command == "step":
        step(fw, args.case, args.out, args.resize, args.lr)
    elif args.command == "evaluate":
        evaluate(fw, args.weights, args.data, args.resize, args.out)
    elif args.command == "logits":
        logits(fw, one(args.weights), args.case, args.resize, args.out)
    else:
        return onnx_check(fw, args.model, args.case, args.resize, args.against)
    return 0


if __name__ == "__main__":
    sys.exit(main())
