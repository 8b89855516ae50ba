"""Tables for the heavy nox sessions, from the files the runs wrote (framework-free).

    python -m common.report converge --min-acc 0.87 RUN_DIR...
    python -m common.report bench BENCH.jsonl
"""

import argparse
import json
import sys
from pathlib import Path


def converge_table(runs: list[Path], min_acc: float) -> tuple[str, list[str]]:
    """backend | device | epochs | final loss | train acc | test acc | wall time | images/s, and failures."""
    rows = [f"{'backend':<8}{'device':<28}{'epochs':>7}{'loss':>8}{'train acc':>11}{'test acc':>10}"
            f"{'wall s':>9}{'img/s':>9}"]
    failures = []
    for run in runs:
        s = json.loads((run / "summary.json").read_text())
        losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        rows.append(f"{s['backend']:<8}{s['device'][:27]:<28}{s['epochs']:>7}{s['loss']:>8.3f}"
                    f"{s['train_acc']:>11.3f}{s['test_acc']:>10.3f}{s['wall_time']:>9.1f}"
                    f"{s['examples_per_sec']:>9.1f}")
        if s["test_acc"] < min_acc:
            failures.append(f"{s['backend']}: test acc {s['test_acc']:.3f} is below {min_acc}")
        if len(losses) > 1 and not losses[-1] < losses[0]:
            failures.append(f"{s['backend']}: the loss did not fall ({losses[0]:.3f} -> {losses[-1]:.3f})")
    return "\n".join(rows), failures


def bench_table(path: Path) -> str:
    """backend | device | batch | input | training img/s | evaluation img/s, one row per measurement."""
    rows = [f"{'backend':<18}{'device':<28}{'batch':>6}{'input':>6}{'train img/s':>13}{'eval img/s':>12}"]
    for line in path.read_text().splitlines():
        r = json.loads(line)
        evaluation = f"{r['eval_images_per_sec']:.1f}" if "eval_images_per_sec" in r else "-"
        rows.append(f"{r['backend']:<18}{r['device'][:27]:<28}{r['batch_size']:>6}{r['resize']:>6}"
                    f"{r['train_images_per_sec']:>13.1f}{evaluation:>12}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Print a converge or bench table; converge exits 1 when a run missed the bar."""
    p = argparse.ArgumentParser(prog="python -m common.report", description=main.__doc__)
    p.add_argument("kind", choices=["converge", "bench"])
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--min-acc", type=float, default=0.87)
    args = p.parse_args(argv)
    if args.kind == "bench":
        print(bench_table(args.paths[0]))
        return 0
    table, failures = converge_table(args.paths, args.min_acc)
    print(table)
    for failure in failures:
        print(f"NOT CONVERGED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
