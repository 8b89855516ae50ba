"""The one train parser: the book's defaults, documented flags, one-line errors."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.cli import bench_parser, hparams_from_args, parse_args, parser, predict_parser
from common.errors import UserError
from common.hparams import BOOK, HParams
from common.metrics import append_json_line

FLAGS = ["--epochs", "--batch-size", "--lr", "--resize", "--train-limit", "--test-limit", "--data-dir",
         "--device", "--seed", "--out", "--resume", "--force", "--no-progress", "--devices", "--fast", "--dry-run"]


def test_defaults_are_the_books():
    hp = hparams_from_args(parse_args("torch", []))
    assert hp == BOOK
    assert (hp.lr, hp.batch_size, hp.num_epochs, hp.resize) == (0.01, 128, 10, 224)
    assert str(parse_args("tf", []).out) == "runs/tf"


def test_help_documents_every_flag_with_its_default():
    text = parser("torch").format_help()
    for flag in FLAGS:
        assert flag in text
    assert "default: 0.01" in text and "default: 224" in text and "python -m alexnet_torch.train" in text
    flat = " ".join(text.split())  # argparse wraps the help lines
    assert "(default: None)" not in flat and "(default: False)" not in flat
    assert "shuffling and dropout (default: 0)" in flat  # --seed's 0 is a default, not an off switch
    assert "(default: all 60,000)" in flat and flat.count("(default:") == flat.count("default:")


@pytest.mark.parametrize("argv, phrase", [
    (["--epochs", "0"], "argument --epochs: expected a whole number of at least 1, got '0'"),
    (["--batch-size", "-3"], "--batch-size"),
    (["--lr", "0"], "expected a number above 0"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "fast"], "got 'fast'"),
    (["--test-limit", "0"], "--test-limit"),
    (["--resize", "66"], "smallest valid size is 67"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flags_exit_2_with_one_line(capsys, argv, phrase):
    with pytest.raises(SystemExit) as e:
        parse_args("torch", argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and phrase in err and err.count("\n") == 1, err


@pytest.mark.parametrize("command", ["fashion_mnist", "filters", "launch", "report", "shapes", "side_by_side", "spec"])
def test_every_common_command_says_a_bad_flag_in_one_line(capsys, command):
    with pytest.raises(SystemExit) as e:
        importlib.import_module(f"common.{command}").main(["--bogus"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert f"python -m common.{command} --help" in err


def test_output_into_a_closed_pipe_ends_quietly():
    """`python -m common.spec | head -1`: the reader leaves early, and the command says nothing more."""
    read, write = os.pipe()
    os.close(read)  # the reader has gone before the first line
    try:
        proc = subprocess.run([sys.executable, "-m", "common.spec"], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    finally:
        os.close(write)
    assert proc.returncode == 1 and proc.stderr == ""


def test_resume_and_force_contradict():
    with pytest.raises(UserError, match="only one"):
        parse_args("torch", ["--resume", "--force"])


def test_dry_run_is_two_batches_of_one_epoch_in_a_throwaway_directory(tmp_path):
    args = parse_args("torch", ["--dry-run", "--batch-size", "16", "--epochs", "5"])
    assert (args.epochs, args.train_limit, args.test_limit) == (1, 32, 16)
    assert args.temporary_out and args.out is None  # made by rank 0 when the run opens, removed at its end
    kept = parse_args("torch", ["--dry-run", "--out", str(tmp_path / "mine")])
    assert not kept.temporary_out and kept.out == tmp_path / "mine"
    with pytest.raises(UserError, match="cannot --resume"):
        parse_args("torch", ["--dry-run", "--resume", "--out", str(tmp_path)])


def test_resume_takes_the_runs_stored_settings(tmp_path):
    stored = {"lr": 0.05, "batch_size": 32, "num_epochs": 3, "resize": 67, "seed": 4, "train_limit": 500,
              "test_limit": None, "fast": True}
    (tmp_path / "state.json").write_text(json.dumps({"hparams": stored, "data_dir": "/data/fm"}))
    args = parse_args("tf", ["--out", str(tmp_path), "--resume"])
    assert hparams_from_args(args) == HParams(**stored) and args.data_dir == Path("/data/fm")
    more = parse_args("tf", ["--out", str(tmp_path), "--resume", "--epochs", "5", "--no-fast", "--lr", "0.01"])
    assert (more.epochs, more.fast, more.lr, more.resize) == (5, False, 0.01, 67)  # given flags win; Run checks them
    assert parse_args("tf", ["--out", str(tmp_path / "none"), "--resume"]).lr == BOOK.lr  # Run says there is none


def test_fast_is_opt_in_and_part_of_the_run_settings():
    assert not BOOK.fast
    assert hparams_from_args(parse_args("tf", ["--fast"])) == HParams(fast=True)
    args = bench_parser("mxnet").parse_args(["--fast", "--profile", "prof"])
    assert args.fast and str(args.profile) == "prof"


def test_a_benchmarks_output_paths_are_made_at_once_or_refused_in_one_line(tmp_path, capsys, monkeypatch):
    args = bench_parser("torch").parse_args(["--json", str(tmp_path / "new" / "b.jsonl"), "--profile",
                                             str(tmp_path / "prof")])
    assert (tmp_path / "new").is_dir() and (tmp_path / "prof").is_dir() and args.json.name == "b.jsonl"
    (tmp_path / "a-file").write_text("")
    for argv, phrase in [(["--json", str(tmp_path / "a-file" / "b.jsonl")], "cannot make the folder"),
                         (["--profile", str(tmp_path / "a-file" / "p")], "cannot make the folder"),
                         (["--json", str(tmp_path)], "is a folder: name a file in it")]:
        with pytest.raises(SystemExit) as e:  # before a minute of measuring, not after it
            bench_parser("torch").parse_args(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and phrase in err and err.count("\n") == 1, err
    (tmp_path / "theirs.jsonl").write_text("")
    for argv, phrase in [(["--json", str(tmp_path / "theirs.jsonl")], "cannot write"),
                         (["--profile", str(tmp_path / "prof")], "cannot write in the folder")]:
        with monkeypatch.context() as m, pytest.raises(SystemExit) as e:  # another user's, as root never sees
            m.setattr(os, "access", lambda path, mode: False)
            bench_parser("torch").parse_args(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and phrase in err and "(Permission denied): choose another" in err, err


@pytest.mark.parametrize("make, argv", [
    (parser, ["--out", ""]), (parser, ["--data-dir", ""]), (parser, ["--init-weights", " "]),
    (predict_parser, ["--weights", ""]), (predict_parser, [""]), (predict_parser, ["--out-dir", ""]),
    (bench_parser, ["--json", ""]), (bench_parser, ["--profile", ""]),
], ids=["train-out", "train-data-dir", "train-init-weights", "predict-weights", "predict-image", "predict-out-dir",
        "bench-json", "bench-profile"])
def test_an_empty_path_is_refused_not_read_as_this_folder(make, argv, capsys):
    """`--out "$OUT"` with OUT unset would write a run into the current folder, wherever that is."""
    with pytest.raises(SystemExit) as e:
        make("torch").parse_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "expected a path, got" in err and err.count("\n") == 1, err
    assert parser("torch").parse_args(["--seed", "4294967295"]).seed == 2**32 - 1  # NumPy's and Keras's largest


def test_a_result_that_cannot_be_appended_is_one_line_after_the_figures(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UserError, match=r"^cannot append to .*a-file/b.jsonl \(.+\): the figures above "
                                        r"are all there is; choose another --json$"):
        append_json_line(tmp_path / "a-file" / "b.jsonl", {"backend": "x"})

