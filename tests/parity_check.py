"""The framework-free side of `nox -s parity`: write the shared case, then compare the results.

    python -m tests.parity_check make --dir D
    python -m tests.parity_check compare --dir D [--backends NAME ...]  (default: every backend)
"""

import argparse
import json
import sys
from pathlib import Path

from common import parity
from common.backends import NAMES
from tests.synthetic import write_dataset

CASES = {224: 4, 67: 8}  # input side: batch size
LR = 0.01


def make(directory: Path) -> None:
    """One case per input size, and a small learnable IDX dataset for the accuracy cross-check."""
    for resize, batch in CASES.items():
        parity.save(directory / f"case-{resize}.safetensors", parity.make_case(resize, batch, seed=resize))
    write_dataset(directory / "data", n_train=2000, n_test=300)


def compare_steps(directory: Path, backends: list[str]) -> list[str]:
    """Print the numerical comparison per input size; return the problems."""
    problems = []
    for resize in CASES:
        case = parity.load(directory / f"case-{resize}.safetensors")
        results = {b: parity.load(directory / f"{b}-{resize}.safetensors") for b in backends}
        rows, found = parity.compare(case, results, reference=backends[0])
        print(f"\n== input {resize}x{resize}, batch {CASES[resize]}, same weights, dropout off, lr {LR}")
        print("\n".join(rows))
        problems += [f"input {resize}: {p}" for p in found]
    return problems


def compare_accuracy(directory: Path, backends: list[str]) -> list[str]:
    """Print the trained-here, evaluated-there accuracy matrix; return the problems."""
    problems = []
    print("\n== weights trained in one backend, test accuracy evaluated in each")
    print(f"{'trained in':<12}" + "".join(f"{b:>10}" for b in backends) + "  predictions agreeing")
    evaluated = {b: json.loads((directory / f"eval-{b}.json").read_text()) for b in backends}
    for i, trainer in enumerate(backends):  # each eval file lists the trainers' weights in this order
        evals = {b: evaluated[b][i] for b in backends}
        wrong = [e["weights"] for e in evals.values() if Path(e["weights"]).parent.name != f"train-{trainer}"]
        if wrong:
            raise SystemExit(f"expected the weights of train-{trainer} at position {i}, found {wrong}")
        accs = [evals[b]["accuracy"] for b in backends]
        preds = [evals[b]["predictions"] for b in backends]
        agree = sum(len(set(p)) == 1 for p in zip(*preds)) / len(preds[0])
        print(f"{trainer:<12}" + "".join(f"{a:>10.4f}" for a in accs) + f"  {agree:.2%}")
        if len(set(accs)) != 1:
            problems.append(f"weights trained in {trainer} evaluate to different accuracies: {accs}")
    return problems


def main() -> int:
    """Make the case, or compare the results and exit 1 on any difference over its limit."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("command", choices=["make", "compare"])
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--backends", nargs="+", default=list(NAMES))
    args = p.parse_args()
    if args.command == "make":
        make(args.dir)
        return 0
    problems = compare_steps(args.dir, args.backends) + compare_accuracy(args.dir, args.backends)
    for problem in problems:
        print(f"PARITY FAILURE {problem}", file=sys.stderr)
    print("\nall backends agree" if not problems else f"\n{len(problems)} parity failure(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
