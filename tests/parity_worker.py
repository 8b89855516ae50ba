"""One backend's side of `nox -s parity`, run in that backend's venv; reads and writes NumPy files.

    python -m tests.parity_worker step --backend torch --case CASE --out RESULT
    python -m tests.parity_worker evaluate --backend tf --weights W --data DIR --resize N --out JSON
"""

import argparse
import importlib
import json
from pathlib import Path

import numpy as np

from common import parity
from common.fashion_mnist import load as load_data
from common.weights import load_weights


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


def evaluate(fw, weights: Path, data_dir: Path, resize: int, out: Path) -> None:
    """Test accuracy and predictions of neutral weights on an IDX test split."""
    data = load_data(data_dir)
    net = fw.model.alexnet(resize)
    fw.model.set_weights(net, load_weights(weights, resize))
    pixels = fw.data.preprocess(data.test_images, resize, fw.step.get_device("cpu"))
    predictions = fw.model.predict(net, pixels).argmax(axis=1)
    out.write_text(json.dumps({"accuracy": float((predictions == data.test_labels).mean()),
                               "predictions": predictions.tolist()}))


def main() -> None:
    """Parse the command and run it with the named backend."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("command", choices=["step", "evaluate"])
    p.add_argument("--backend", required=True)
    p.add_argument("--case", type=Path)
    p.add_argument("--weights", type=Path)
    p.add_argument("--data", type=Path)
    p.add_argument("--resize", type=int, required=True)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    fw = argparse.Namespace(**{m: importlib.import_module(f"alexnet_{args.backend}.{m}")
                               for m in ("model", "data", "step", "train")})
    if args.command == "step":
        step(fw, args.case, args.out, args.resize, args.lr)
    else:
        evaluate(fw, args.weights, args.data, args.resize, args.out)


if __name__ == "__main__":
    main()
