"""The benchmark command measures and reports both throughputs (figures are not judged here)."""

import importlib
import importlib.util
import json

import pytest

from common.precision import OVERRIDE
from common.spec import MIN_RESIZE, forward_flops


def test_bench_reports_training_and_evaluation_speed(backend, tmp_path, capsys):
    bench = importlib.import_module(f"alexnet_{backend}.bench")
    bench.main(["--resize", str(MIN_RESIZE), "--batch-size", "8", "--steps", "2", "--gemm", "256",
                "--json", str(tmp_path / "b.jsonl")])
    record = json.loads((tmp_path / "b.jsonl").read_text())
    assert record["backend"] == backend and record["batch_size"] == 8 and record["resize"] == MIN_RESIZE
    assert record["train_images_per_sec"] > 0 and record["eval_images_per_sec"] > 0
    printed = capsys.readouterr().out
    assert "training" in printed and "ceiling: a 256x256 float32 matrix product" in printed
    assert record["mode"] == "faithful" and record["memory"]["peak_mb"] > 0
    ceiling = record["ceiling"]
    assert ceiling["dtype"] == "float32" and ceiling["side"] == 256 and 1e8 < ceiling["flops_per_sec"] < 1e16
    assert ceiling["flops_per_sec"] == max(ceiling["before"], ceiling["after"]) and 0 <= ceiling["drift"] < 1
    train_flops = 3 * forward_flops(MIN_RESIZE)  # the share is of the spec's FLOPs, not the framework's
    assert record["train_share"] == pytest.approx(record["train_images_per_sec"] * train_flops
                                                  / ceiling["flops_per_sec"])


def test_fast_bench_with_a_profile(backend, can, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(OVERRIDE, "1")  # a CPU with bf16 instructions: the backends that use them do
    bench = importlib.import_module(f"alexnet_{backend}.bench")
    bench.main(["--resize", str(MIN_RESIZE), "--batch-size", "8", "--steps", "2", "--fast", "--gemm", "256",
                "--profile", str(tmp_path / "prof"), "--json", str(tmp_path / "b.jsonl")])
    record = json.loads((tmp_path / "b.jsonl").read_text())
    assert record["mode"] == "fast" and record["ceiling"]["dtype"] == ("bfloat16" if can.bf16 else "float32")
    printed = capsys.readouterr().out
    traced = [p for p in (tmp_path / "prof").rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert traced, "no trace written"
    if can.profile_table:  # TensorFlow's table is TensorBoard's; the others print theirs
        assert "conv" in printed.lower() and "time" in printed.lower(), printed


def test_the_books_data_path_times_a_whole_run(backend, tiny_data, tmp_path, capsys):
    if importlib.util.find_spec(f"alexnet_{backend}.bench_book") is None:
        pytest.skip("the book's own data path is PyTorch's (torchvision's loader), as in the book")
    bench_book = importlib.import_module(f"alexnet_{backend}.bench_book")

    bench_book.main(["--epochs", "2", "--data-dir", str(tiny_data), "--resize", str(MIN_RESIZE), "--batch-size", "64",
                     "--json", str(tmp_path / "book.jsonl")])
    record = json.loads((tmp_path / "book.jsonl").read_text())
    assert record["epoch"] == 2 and record["wall_time"] > 0 and 0 <= record["test_acc"] <= 1
    assert "epoch 2/2" in capsys.readouterr().out
    for argv, said in [(["--fast"], "unrecognized arguments: --fast"),  # float32 only: not in its --help either
                       (["--train-limit", "100"], "--train-limit shape a whole run: add --epochs N")]:
        with pytest.raises(SystemExit) as e:
            bench_book.main(argv)
        assert e.value.code == 2 and said in capsys.readouterr().err
