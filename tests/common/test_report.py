"""The heavy sessions' tables: a run that missed the bar or whose loss did not fall fails."""

import json
import resource
import subprocess
import sys
from types import SimpleNamespace

import pytest

from common import metrics
from common.hparams import HParams
from common.metrics import bench_line, bench_result, ceiling_around, gemm_ceiling, long_run, memory_record
from common.report import bench_table, book_comparison, budget_table, converge_table


def fake_run(directory, backend, losses, test_acc, fast=False, batch_size=128, num_train=1000):
    directory.mkdir(parents=True)
    records = [{"loss": x, "examples_per_sec": 100.0, "train_time": num_train / 100} for x in losses]
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (directory / "summary.json").write_text(json.dumps({
        "backend": backend, "device": "cpu", "epochs": len(losses), "loss": losses[-1], "train_acc": 0.9,
        "test_acc": test_acc, "wall_time": 12.5, "examples_per_sec": 100.0,
        "hparams": HParams(batch_size=batch_size, resize=67, fast=fast).to_dict(),
        "memory": {"peak_mb": 1234.5, "what": "process peak RSS"}}))
    return directory


def test_converge_table_passes_and_fails(tmp_path):
    good = fake_run(tmp_path / "a", "torch", [2.3, 0.5], 0.88)
    fast = fake_run(tmp_path / "f", "torch", [2.3, 0.6], 0.875, fast=True)
    flat = fake_run(tmp_path / "b", "tf", [2.3, 2.31], 0.88)
    low = fake_run(tmp_path / "c", "mxnet", [2.3, 1.0], 0.5, fast=True)
    table, failures = converge_table([good, fast, flat, low], min_acc=0.87)
    rows = table.splitlines()
    assert "faithful" in rows[1] and "0.880" in rows[1] and "fast" in rows[2] and "0.875" in rows[2]
    assert failures == ["tf (faithful): the loss did not fall (2.300 -> 2.310)",
                        "mxnet (fast): test acc 0.500 is below 0.87"]


def test_the_command_exits_1_below_the_bar_and_says_one_line_on_bad_paths(tmp_path):
    command = [sys.executable, "-m", "common.report"]
    good, low = fake_run(tmp_path / "a", "torch", [2.3, 0.5], 0.88), fake_run(tmp_path / "b", "jax", [2.3, 1.0], 0.5)
    assert subprocess.run([*command, "converge", str(good)], capture_output=True).returncode == 0
    proc = subprocess.run([*command, "converge", str(good), str(low)], capture_output=True, text=True)
    assert proc.returncode == 1 and "NOT CONVERGED jax (faithful): test acc 0.500" in proc.stderr
    (tmp_path / "stopped").mkdir()
    (tmp_path / "BENCH.jsonl").write_text("{not json\n")
    for argv, said in [(["converge", str(tmp_path / "stopped")], "holds no finished run (no summary.json)"),
                       (["bench", str(tmp_path / "none.jsonl")], "cannot read"),
                       (["bench", str(tmp_path / "BENCH.jsonl")], "is not JSON lines")]:
        proc = subprocess.run([*command, *argv], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and said in proc.stderr, proc.stderr


def test_bench_table(tmp_path):
    path = tmp_path / "b.jsonl"
    ceiling = {"dtype": "bfloat16", "side": 4096, "flops_per_sec": 500e9}
    measured = bench_result("torch", "cpu", 128, 224, 3, True, 50.04, 150.0,
                            {"peak_mb": 1439.6, "what": "process peak RSS"}, ceiling)
    other = bench_result("tf", "/CPU:0", 128, 224, 3, True, 60.0, 200.0, {"peak_mb": 1000.0, "what": "RSS"},
                         {**ceiling, "flops_per_sec": 1000e9})
    book = {"backend": "torch (book data path)", "device": "cpu", "batch_size": 128, "resize": 224,
            "train_images_per_sec": 44.6}  # bench_book's record: no ceiling, no evaluation
    path.write_text("".join(json.dumps(r) + "\n" for r in (measured, other, book)))
    rows = bench_table(path).splitlines()
    # 50.04 images/s x 5.63 GFLOP = 282 GFLOP/s: 56% of torch's 500, 28% of the best (tf's 1000)
    # At the least 374 MB of weights and gradients, and 128 images' float32 input and bf16 activations: 560 MiB.
    assert rows[1].split() == ["torch", "fast", "bfloat16", "128", "224", "5.63", "50.0", "282", "56%", "28%", "150.0",
                               "56%", "560", "1440"]
    assert rows[3].split()[-8:] == ["44.6", "-", "-", "-", "-", "-", "738", "-"]  # float32: 774 MB
    assert "torch bfloat16 500, tf bfloat16 1000" in rows[4] and "tf on /CPU:0" in rows[5]


def test_gemm_ceiling_takes_the_fastest_call():
    seconds = iter([5.0, 0.5, 0.25, 0.4])  # the first call warms up and is not counted
    clock = [0.0]

    def product():
        clock[0] += next(seconds)

    ceiling = gemm_ceiling(product, 100, "float32", repeats=3, clock=lambda: clock[0])
    assert ceiling == {"dtype": "float32", "side": 100, "flops_per_sec": 2 * 100**3 / 0.25}


def test_budget_table_counts_steps(tmp_path):
    runs = [fake_run(tmp_path / str(b), "torch", [2.3, 1.0], 0.7, batch_size=b) for b in (32, 256)]
    rows = budget_table(runs).splitlines()
    assert rows[1].split()[:5] == ["torch", "32", "67", "2000", "64"]  # 2 epochs of ceil(1000 / 32) steps
    assert rows[2].split()[:5] == ["torch", "256", "67", "2000", "8"] and rows[2].split()[-1] == "1234"


def test_long_run_threshold():
    assert long_run(HParams(), 60_000, 10)
    assert not long_run(HParams(resize=67), 256, 2)
    assert long_run(HParams(resize=67, num_epochs=2, batch_size=64, lr=0.05), 60_000, 2)  # --quick: say its time


def test_memory_record_defaults_to_this_process():
    assert memory_record(2048.04, "CUDA max_memory_allocated") == {"peak_mb": 2048.0,
                                                                   "what": "CUDA max_memory_allocated"}
    ours = memory_record()
    assert ours["what"] == "process peak RSS" and 10 < ours["peak_mb"] < 100_000  # MiB: pytest needs some


def test_peak_memory_is_in_mib_on_macos_and_not_measured_on_windows(monkeypatch, tmp_path):
    linux = metrics.peak_rss_mb()
    monkeypatch.setattr(metrics.sys, "platform", "darwin")  # macOS gives ru_maxrss in bytes, Linux in KiB
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=kib * 1024))
    assert metrics.peak_rss_mb() == pytest.approx(linux, rel=0.05)
    monkeypatch.setitem(sys.modules, "resource", None)  # Windows has no resource module
    unmeasured = memory_record()
    assert unmeasured == {"peak_mb": None, "what": "not measured: Windows has no getrusage"}
    ceiling = {"dtype": "float32", "side": 4096, "flops_per_sec": 60e9}
    result = bench_result("torch", "cpu", 128, 224, 2, False, 10.0, 30.0, unmeasured, ceiling)
    assert "peak memory - MiB (not measured: Windows has no getrusage)" in bench_line(result)
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(result) + "\n")
    assert bench_table(path).splitlines()[1].endswith("-")
    run = fake_run(tmp_path / "run", "torch", [2.3, 1.0], 0.7)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "memory": unmeasured}))
    assert budget_table([run]).splitlines()[1].endswith("-")


def test_book_comparison_is_a_wall_time_ratio(tmp_path):
    runs = [fake_run(tmp_path / "fast", "torch", [2.3, 1.0], 0.7, fast=True),
            fake_run(tmp_path / "faithful", "torch", [2.3, 1.0], 0.7)]
    book = tmp_path / "book.jsonl"
    book.write_text(json.dumps({"wall_time": 50.0, "test_acc": 0.69}) + "\n")
    assert book_comparison(book, runs).endswith("12.5s, test acc 0.700: 4.00x faster in wall time")


def test_the_ceiling_is_measured_around_the_timing_and_a_moving_machine_is_told():
    ceiling = {"dtype": "float32", "side": 4096}
    steady = ceiling_around({**ceiling, "flops_per_sec": 60e9}, {**ceiling, "flops_per_sec": 57e9})
    assert steady["flops_per_sec"] == 60e9 and steady["drift"] == pytest.approx(0.05)
    assert (steady["before"], steady["after"]) == (60e9, 57e9)
    moved = ceiling_around({**ceiling, "flops_per_sec": 30e9}, {**ceiling, "flops_per_sec": 60e9})
    assert moved["flops_per_sec"] == 60e9 and moved["drift"] == pytest.approx(0.5)
    memory = {"peak_mb": 1.0, "what": "RSS"}
    quiet = bench_line(bench_result("torch", "cpu", 128, 224, 2, False, 10.0, 30.0, memory, steady))
    assert "warning" not in quiet
    noisy = bench_line(bench_result("torch", "cpu", 128, 224, 2, False, 10.0, 30.0, memory, moved))
    assert noisy.splitlines()[-1].startswith("warning: the ceiling moved 50% during this run (30.0 GFLOP/s before")
    # 10 images/s x 5.63 GFLOP against the faster of the two, 60 GFLOP/s
    assert "training reaches 94% of it" in noisy


def test_bench_table_names_the_runs_whose_ceiling_moved(tmp_path):
    ceiling = {"dtype": "float32", "side": 4096}
    memory = {"peak_mb": 1.0, "what": "RSS"}
    records = [bench_result(backend, "cpu", 128, 224, 2, False, 10.0, 30.0, memory,
                            ceiling_around({**ceiling, "flops_per_sec": 60e9}, {**ceiling, "flops_per_sec": after}))
               for backend, after in (("torch", 58e9), ("mxnet", 40e9))]
    path = tmp_path / "b.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = bench_table(path).splitlines()
    assert rows[-2] == ("the ceiling moved more than 10% during: mxnet faithful batch 128 at 224 (33%); "
                        "their shares are uncertain")
    assert not any("torch faithful batch" in row for row in rows)
