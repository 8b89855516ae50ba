"""The heavy sessions' tables: a run that missed the bar or whose loss did not fall fails."""

import json

from common.hparams import HParams
from common.metrics import long_run
from common.report import bench_table, converge_table


def fake_run(directory, backend, losses, test_acc):
    directory.mkdir(parents=True)
    (directory / "metrics.jsonl").write_text("".join(json.dumps({"loss": x}) + "\n" for x in losses))
    (directory / "summary.json").write_text(json.dumps({
        "backend": backend, "device": "cpu", "epochs": len(losses), "loss": losses[-1], "train_acc": 0.9,
        "test_acc": test_acc, "wall_time": 12.5, "examples_per_sec": 100.0}))
    return directory


def test_converge_table_passes_and_fails(tmp_path):
    good = fake_run(tmp_path / "a", "torch", [2.3, 0.5], 0.88)
    flat = fake_run(tmp_path / "b", "tf", [2.3, 2.31], 0.88)
    low = fake_run(tmp_path / "c", "mxnet", [2.3, 1.0], 0.5)
    table, failures = converge_table([good, flat, low], min_acc=0.87)
    assert "torch" in table and "0.880" in table
    assert failures == ["tf: the loss did not fall (2.300 -> 2.310)", "mxnet: test acc 0.500 is below 0.87"]


def test_bench_table(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps({"backend": "torch", "device": "cpu", "batch_size": 128, "resize": 224,
                                "train_images_per_sec": 50.04, "eval_images_per_sec": 150.0}) + "\n")
    assert "50.0" in bench_table(path) and "150.0" in bench_table(path)


def test_long_run_threshold():
    assert long_run(HParams(), 60_000, 10)
    assert not long_run(HParams(resize=67), 256, 2)
