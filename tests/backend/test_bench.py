"""The benchmark command measures and reports both throughputs (figures are not judged here)."""

import importlib
import json

from common.spec import MIN_RESIZE


def test_bench_reports_training_and_evaluation_speed(backend, tmp_path, capsys):
    bench = importlib.import_module(f"alexnet_{backend}.bench")
    bench.main(["--resize", str(MIN_RESIZE), "--batch-size", "8", "--steps", "2", "--json", str(tmp_path / "b.jsonl")])
    record = json.loads((tmp_path / "b.jsonl").read_text())
    assert record["backend"] == backend and record["batch_size"] == 8 and record["resize"] == MIN_RESIZE
    assert record["train_images_per_sec"] > 0 and record["eval_images_per_sec"] > 0
    assert "training" in capsys.readouterr().out
