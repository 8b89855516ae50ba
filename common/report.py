"""Tables for the heavy nox sessions, from the files the runs wrote (framework-free).

    python -m common.report converge --min-acc 0.87 [--book BOOK.jsonl] RUN_DIR...
    python -m common.report bench BENCH.jsonl [BUDGET_RUN_DIR...]
"""

import json
import sys
from pathlib import Path

from common.errors import Help, Parser, UserError, path_arg, run_cli
from common.metrics import DRIFT, ceiling_moved, mib, mode
from common.spec import training_bytes


def _json_lines(path: Path, fix: str) -> list[dict]:
    """The JSON objects of a file, one per line; a missing or damaged file stops with one line and `fix`."""
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}): {fix}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not JSON lines ({e}): {fix}") from None


def _summary(run: Path) -> dict:
    """A finished run's summary.json, with its mode (faithful or fast)."""
    if not (run / "summary.json").is_file():
        raise UserError(f"{run} holds no finished run (no summary.json): pass the directories of finished runs "
                        f"(a stopped one finishes with --resume)")
    try:
        s = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{run / 'summary.json'} is damaged ({e}): finish the run again with --force") from None
    return {**s, "mode": mode(s["hparams"].get("fast", False))}


def converge_table(runs: list[Path], min_acc: float) -> tuple[str, list[str]]:
    """backend | mode | device | epochs | final loss | train acc | test acc | wall time | images/s, and failures."""
    rows = [f"{'backend':<8}{'mode':<10}{'device':<28}{'epochs':>7}{'loss':>8}{'train acc':>11}{'test acc':>10}"
            f"{'wall s':>9}{'img/s':>9}"]
    failures = []
    for run in runs:
        s = _summary(run)
        losses = [r["loss"] for r in _json_lines(run / "metrics.jsonl", "pass the directories of finished runs")]
        rows.append(f"{s['backend']:<8}{s['mode']:<10}{s['device'][:27]:<28}{s['epochs']:>7}{s['loss']:>8.3f}"
                    f"{s['train_acc']:>11.3f}{s['test_acc']:>10.3f}{s['wall_time']:>9.1f}"
                    f"{s['examples_per_sec']:>9.1f}")
        name = f"{s['backend']} ({s['mode']})"
        if s["test_acc"] < min_acc:
            failures.append(f"{name}: test acc {s['test_acc']:.3f} is below {min_acc}")
        if len(losses) > 1 and not losses[-1] < losses[0]:
            failures.append(f"{name}: the loss did not fall ({losses[0]:.3f} -> {losses[-1]:.3f})")
    return "\n".join(rows), failures


def book_comparison(book: Path, runs: list[Path]) -> str:
    """The book's data path against PyTorch's faithful run with the same settings: wall times and their ratio."""
    b = _json_lines(book, "pass the file that alexnet_torch.bench_book wrote")[-1]
    line = (f"the book's data path (4 loader workers, PIL per image): {b['wall_time']:.1f}s wall, "
            f"test acc {b['test_acc']:.3f}")
    faithful = [s for s in map(_summary, runs) if s["backend"] == "torch" and s["mode"] == "faithful"]
    if faithful:
        s = faithful[0]
        line += (f"; PyTorch's faithful run: {s['wall_time']:.1f}s, test acc {s['test_acc']:.3f}: "
                 f"{b['wall_time'] / s['wall_time']:.2f}x faster in wall time")
    return line


def _ceilings(records: list[dict]) -> dict[tuple[str, str], float]:
    """Each backend's matrix-product FLOP/s per precision in this run: (backend, dtype) -> the best measured."""
    ceilings = {}
    for r in records:
        if "ceiling" in r:
            key = (r["backend"], r["ceiling"]["dtype"])
            ceilings[key] = max(ceilings.get(key, 0.0), r["ceiling"]["flops_per_sec"])
    return ceilings


def bench_table(path: Path) -> str:
    """One row per measurement: images/s, the FLOP/s they reach, their share of the ceiling, memory.

    "of own" is the share of the backend's own matrix product in the mode's precision; "of best" the
    share of the fastest one any backend measured in this run, the nearest to the machine's limit.
    "least MiB" is what common.spec says a minibatch keeps in training at the least (the weights, their
    gradients and every layer's output), beside the "peak MiB" measured.
    """
    records = _json_lines(path, "pass the file that `bench --json FILE` wrote")
    ceilings = _ceilings(records)
    best = {dtype: max(rate for (_, d), rate in ceilings.items() if d == dtype) for _, dtype in ceilings}
    rows = [f"{'backend':<18}{'mode':<10}{'computes':<10}{'batch':>6}{'input':>6}{'GFLOP/img':>10}{'train img/s':>12}"
            f"{'GFLOP/s':>9}{'of own':>8}{'of best':>8}{'eval img/s':>11}{'of own':>8}{'least MiB':>10}{'peak MiB':>9}"]
    for r in records:
        evaluation = f"{r['eval_images_per_sec']:.1f}" if "eval_images_per_sec" in r else "-"
        memory = mib(r.get("memory", {}))
        per_image, reached, own, of_best, eval_own = "-", "-", "-", "-", "-"
        if "ceiling" in r:
            flops = r["train_images_per_sec"] * r["train_flops_per_image"]  # FLOP/s the training reached
            per_image, reached = f"{r['train_flops_per_image'] / 1e9:.2f}", f"{flops / 1e9:.0f}"
            own, eval_own = f"{r['train_share']:.0%}", f"{r['eval_share']:.0%}"
            of_best = f"{flops / best[r['ceiling']['dtype']]:.0%}"
        dtype = r.get("ceiling", {}).get("dtype", "-")  # the precision the network computed in
        least = training_bytes(r["resize"], r["batch_size"], dtype) / 2**20
        rows.append(f"{r['backend']:<18}{r.get('mode', 'faithful'):<10}{dtype:<10}{r['batch_size']:>6}{r['resize']:>6}"
                    f"{per_image:>10}{r['train_images_per_sec']:>12.1f}{reached:>9}{own:>8}{of_best:>8}"
                    f"{evaluation:>11}{eval_own:>8}{least:>10.0f}{memory:>9}")
    rows.append("ceilings, the best of 5 square matrix products in each framework (GFLOP/s): " + ", ".join(
        f"{backend} {dtype} {rate / 1e9:.0f}" for (backend, dtype), rate in ceilings.items()))
    moved = [f"{r['backend']} {r.get('mode', 'faithful')} batch {r['batch_size']} at {r['resize']} "
             f"({r['ceiling']['drift']:.0%})" for r in records if ceiling_moved(r)]
    if moved:  # the machine's speed changed during these runs (bench printed a warning for each)
        rows.append(f"the ceiling moved more than {DRIFT:.0%} during: {', '.join(moved)}; their shares are uncertain")
    devices = sorted({f"{r['backend']} on {r['device']}" for r in records})
    rows.append("devices: " + "; ".join(devices))
    return "\n".join(rows)


def budget_table(runs: list[Path]) -> str:
    """The same training budget at each batch size: steps taken, test acc, images/s and peak memory."""
    rows = [f"{'backend':<8}{'batch':>6}{'input':>6}{'images':>9}{'steps':>7}{'loss':>8}{'test acc':>10}"
            f"{'img/s':>9}{'peak MiB':>10}"]
    for run in runs:
        s = _summary(run)
        hp = s["hparams"]
        first = _json_lines(run / "metrics.jsonl", "pass the directories of finished runs")[0]
        per_epoch = round(first["examples_per_sec"] * first["train_time"])  # training images in an epoch
        images, steps = per_epoch * s["epochs"], s["epochs"] * -(-per_epoch // hp["batch_size"])
        rows.append(f"{s['backend']:<8}{hp['batch_size']:>6}{hp['resize']:>6}{images:>9}{steps:>7}{s['loss']:>8.3f}"
                    f"{s['test_acc']:>10.3f}{s['examples_per_sec']:>9.1f}{mib(s['memory']):>10}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Print a converge or bench table; converge exits 1 when a run missed the bar."""
    p = Parser(prog="python -m common.report", description=main.__doc__, formatter_class=Help)
    p.add_argument("kind", choices=["converge", "bench"], help="converge: finished runs against --min-acc; "
                   "bench: the JSON lines of `bench --json`, then fixed-budget runs")
    p.add_argument("paths", nargs="+", type=path_arg, metavar="PATH",
                   help="converge: run directories; bench: BENCH.jsonl, then run directories")
    p.add_argument("--min-acc", type=float, default=0.87, help="converge: the test accuracy every run must reach")
    p.add_argument("--book", type=path_arg, default=None, help="converge: the book data path's run (JSON lines)")
    args = p.parse_args(argv)
    if args.kind == "bench":  # BENCH.jsonl, then the fixed-budget runs
        print(bench_table(args.paths[0]))
        if args.paths[1:]:
            print("\naccuracy after a fixed budget, per batch size (the book's exercise):")
            print(budget_table(args.paths[1:]))
        return
    table, failures = converge_table(args.paths, args.min_acc)
    print(table)
    if args.book:
        print(book_comparison(args.book, args.paths))
    for failure in failures:
        print(f"NOT CONVERGED {failure}", file=sys.stderr)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    run_cli(main)
