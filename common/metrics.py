"""What a run reports: epoch records, the book's lines, the curves plot and the summary."""

import io
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.atomic import atomic_write_bytes, atomic_write_text
from common.errors import UserError
from common.hparams import HParams
from common.spec import forward_flops


def epoch_record(epoch: int, loss: float, train_acc: float, test_acc: float,
                 num_train: int, train_time: float, epoch_time: float, points: list | None = None) -> dict:
    """One epoch's metrics, as a line of metrics.jsonl; `points`: (epoch, loss, acc) so far, along the way."""
    return {"epoch": epoch, "loss": loss, "train_acc": train_acc, "test_acc": test_acc,
            "examples_per_sec": num_train / train_time, "train_time": train_time,
            "epoch_time": epoch_time, "points": points or []}


def epoch_line(record: dict, num_epochs: int) -> str:
    """The line printed after each epoch."""
    return (f"epoch {record['epoch']}/{num_epochs}: loss {record['loss']:.3f}, "
            f"train acc {record['train_acc']:.3f}, test acc {record['test_acc']:.3f}, "
            f"{record['examples_per_sec']:.1f} examples/sec, {record['epoch_time']:.1f}s")


def examples_per_sec(history: list[dict]) -> float:
    """Training throughput over all epochs, as the book measures it (evaluation left out)."""
    images = sum(r["examples_per_sec"] * r["train_time"] for r in history)
    return images / sum(r["train_time"] for r in history)


def book_line(history: list[dict], device: str) -> str:
    """The book's final line: loss, train acc, test acc, examples/sec on the device."""
    last = history[-1]
    return (f"loss {last['loss']:.3f}, train acc {last['train_acc']:.3f}, "
            f"test acc {last['test_acc']:.3f}, {examples_per_sec(history):.1f} examples/sec on {device}")


def progress(total: int, epoch: int, num_epochs: int, disable: bool, initial: int = 0) -> tqdm:
    """A progress bar over one epoch's training images: images/s, this epoch's time left, then the run's."""
    return tqdm(total=total, initial=initial, desc=f"epoch {epoch}/{num_epochs}", unit="img", unit_scale=True,
                leave=False, disable=disable, dynamic_ncols=True)


def run_left(bar: tqdm, num_train: int, num_test: int, epoch: int, num_epochs: int) -> str:
    """The whole run's time left at the bar's rate (the epochs after this one, evaluations included)."""
    rate = bar.format_dict.get("rate")
    if not rate:
        return "run: measuring"
    this_epoch = estimate(rate, num_train - bar.n, num_test, 1)  # the rest of its training, its evaluation
    return f"run: {tqdm.format_interval(this_epoch + estimate(rate, num_train, num_test, num_epochs - epoch))} left"


def long_run(hparams: HParams, num_train: int, num_epochs: float, cpu_flops: float = 2e11) -> bool:
    """Whether a run would take more than a minute even on a fast CPU (worth a timed probe of a few minibatches).

    A minute, not ten: --quick takes minutes on a recent CPU and several times as long on an older one
    (docs/results.md), and a user should hear which before it starts.
    """
    return num_epochs * num_train * 3 * forward_flops(hparams.resize) / cpu_flops > 60


def estimate(images_per_sec: float, num_train: int, num_test: int, num_epochs: float) -> float:
    """Seconds a run will take at the measured rate (evaluation costs about a third of training)."""
    return num_epochs * (num_train + num_test / 3) / images_per_sec


def counted(n: float, noun: str) -> str:
    """A count and its noun in words: '1 epoch', '6 epochs', '9.6 epochs' (one decimal where not whole)."""
    return f"{n:.{0 if n == int(n) else 1}f} {noun}{'' if n == 1 else 's'}"


def estimate_line(seconds: float, images_per_sec: float, device: str, left: float, num_epochs: int,
                  fast_helps: bool = True) -> str:
    """Say how long a run (or what is left of a resumed one) will take and, for a long one, how to shorten it.

    --fast is suggested only where it computes in bf16 (`fast_helps`).
    """
    human = f"{seconds / 3600:.1f} hours" if seconds >= 3600 else f"{seconds / 60:.0f} minutes"
    epochs = counted(left, "epoch")
    epochs = epochs if left == num_epochs else f"the {epochs} left"
    line = f"measured {images_per_sec:.1f} training images/s on {device}, so {epochs} will take about {human}"
    if seconds < 3600:
        return f"note: {line}"
    return (f"warning: {line}; Ctrl-C stops it keeping the work done (--resume goes on). Shorter: --quick "
            f"(minutes; it says how many as it starts), {'--fast, ' if fast_helps else ''}a smaller --resize or "
            f"--train-limit, or a GPU")


def mode(fast: bool) -> str:
    """The name of a run's numerics: the book's float32, or the opt-in fast path."""
    return "fast" if fast else "faithful"


def memory_record(peak_mb: float | None = None, what: str = "process peak RSS") -> dict:
    """Peak memory and what measured it: the device's allocator, or by default this process's peak RSS."""
    if peak_mb is None:
        peak_mb = peak_rss_mb()
        if peak_mb is None:
            return {"peak_mb": None, "what": "not measured: Windows has no getrusage"}
    return {"peak_mb": round(peak_mb, 1), "what": what}


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MiB, None where the OS does not say (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # macOS reports bytes, Linux KiB


def mib(memory: dict) -> str:
    """A memory record's peak as whole MiB, or '-' where it was not measured."""
    return "-" if memory.get("peak_mb") is None else f"{memory['peak_mb']:.0f}"


# ---- The machine's ceiling ----

GEMM_SIDE = 4096  # the ceiling's square matrix product: large enough for every framework to reach its peak


def fastest(call: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds of the fastest of `repeats` calls of `call` (which waits for its device), after a warm-up call.

    The fastest, not the mean: a call slowed once (a page fault, another process) says nothing of the rest.
    """
    call()  # warm-up: allocation, kernel choice, compiling
    seconds = []
    for _ in range(repeats):
        start = clock()
        call()
        seconds.append(clock() - start)
    return min(seconds)


def gemm_ceiling(product: Callable[[], object], side: int, dtype: str, repeats: int = 5,
                 clock: Callable[[], float] = time.perf_counter) -> dict:
    """The FLOP/s of the fastest of `repeats` calls of `product`: one side x side matrix product, waited for."""
    return {"dtype": dtype, "side": side, "flops_per_sec": 2 * side**3 / fastest(product, repeats, clock)}


DRIFT = 0.10  # a ceiling that moves more than this between its two measurements makes a run's shares uncertain


def ceiling_around(before: dict, after: dict) -> dict:
    """The ceiling measured before and after the network was timed: the faster, and how far apart the two were.

    A shared or throttled machine changes speed from minute to minute (docs/results.md: 2x within a day on
    one CPU), and a share is only as good as the ceiling it divides by: two far apart say so.
    """
    rates = before["flops_per_sec"], after["flops_per_sec"]
    return {**before, "flops_per_sec": max(rates), "before": rates[0], "after": rates[1],
            "drift": 1 - min(rates) / max(rates)}


def ceiling_moved(result: dict) -> bool:
    """Whether the ceiling moved more than DRIFT during the run (False for a ceiling measured once, or none)."""
    return result.get("ceiling", {}).get("drift", 0.0) > DRIFT


def drift_warning(result: dict) -> str | None:
    """A warning when the machine's speed moved during the run, or None (and for a ceiling measured once)."""
    if not ceiling_moved(result):
        return None
    c = result["ceiling"]
    return (f"warning: the ceiling moved {c['drift']:.0%} during this run ({c['before'] / 1e9:.1f} GFLOP/s before "
            f"the timing, {c['after'] / 1e9:.1f} after): this machine's speed changed, so the shares are uncertain; "
            f"run it again when nothing else runs")


def bench_result(backend: str, device: str, batch_size: int, resize: int, steps: int, fast: bool,
                 train_ips: float, eval_ips: float, memory: dict, ceiling: dict) -> dict:
    """One benchmark measurement, with its settings and its share of the matrix-product ceiling."""
    train_flops, eval_flops = 3 * forward_flops(resize), forward_flops(resize)  # per image
    rate = ceiling["flops_per_sec"]
    return {"backend": backend, "mode": mode(fast), "device": device, "batch_size": batch_size,
            "resize": resize, "steps": steps, "train_images_per_sec": train_ips,
            "eval_images_per_sec": eval_ips, "memory": memory, "ceiling": ceiling,
            "train_flops_per_image": train_flops, "eval_flops_per_image": eval_flops,
            "train_share": train_ips * train_flops / rate, "eval_share": eval_ips * eval_flops / rate}


def bench_line(result: dict) -> str:
    """The benchmark's printed result."""
    return (f"{result['backend']} ({result['mode']}, {result['ceiling']['dtype']}) on {result['device']}, "
            f"batch {result['batch_size']}, "
            f"{result['resize']}x{result['resize']}: training {result['train_images_per_sec']:.1f} images/s, "
            f"evaluation {result['eval_images_per_sec']:.1f} images/s ({result['steps']} timed steps each), "
            f"peak memory {mib(result['memory'])} MiB ({result['memory']['what']})\n"
            f"{ceiling_line(result)}")


def ceiling_line(result: dict) -> str:
    """The figures as shares of the ceiling, and the training images/s that ceiling allows."""
    c = result["ceiling"]
    allows = c["flops_per_sec"] / result["train_flops_per_image"]
    line = (f"ceiling: a {c['side']}x{c['side']} {c['dtype']} matrix product runs at {c['flops_per_sec'] / 1e9:.1f} "
            f"GFLOP/s here, which allows {allows:.1f} training images/s at {result['train_flops_per_image'] / 1e9:.2f} "
            f"GFLOP each; training reaches {result['train_share']:.0%} of it, evaluation "
            f"{result['eval_share']:.0%}")
    warning = drift_warning(result)
    return f"{line}\n{warning}" if warning else line


def report_bench(result: dict, json_path: Path | None) -> None:
    """Print a benchmark's result, and append it to `json_path` when one is given."""
    print(bench_line(result))
    if json_path:
        append_json_line(json_path, result)


def append_json_line(path: Path, record: dict) -> None:
    """Append one JSON line (benchmarks collect several runs in one file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:  # a full disk, or a file taken away since the flags were read
        raise UserError(f"cannot append to {path} ({e.strerror or e}): the figures above are all there is; "
                        f"choose another --json") from None


# ---- Files ----


def write_metrics(path: Path, history: list[dict]) -> None:
    """Write every epoch's record as JSON lines (atomically)."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in history))


def curve_points(history: list[dict]) -> list[tuple[float, float, float]]:
    """The training curves' points: several along each epoch (the book plots 5), then its end."""
    points = []
    for r in history:
        points += [tuple(p) for p in r.get("points", [])]
        points.append((r["epoch"], r["loss"], r["train_acc"]))
    return points


def plot_curves(path: Path, history: list[dict], num_epochs: int, title: str) -> None:
    """Plot train loss and acc along the epochs and test acc after each, like the book's figure (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    x, loss, acc = zip(*curve_points(history), strict=True)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.plot(x, loss, "-", marker=".", label="train loss")
    ax.plot(x, acc, "m--", marker=".", label="train acc")
    ax.plot([r["epoch"] for r in history], [r["test_acc"] for r in history], "g-.", marker="o", label="test acc")
    ax.set(xlabel="epoch", xlim=(0, max(num_epochs, 1)), title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def versions(framework: str, version: str) -> dict:
    """Versions worth recording beside a result."""
    return {"python": sys.version.split()[0], "numpy": np.__version__, framework: version,
            "platform": platform.platform()}
