"""The architecture as data against the book's numbers."""

import math
import subprocess
import sys

import pytest

from common.errors import InputTooSmallError
from common.spec import MIN_RESIZE, flat_chw, flat_features, forward_flops, layer_stats, num_params, param_shapes

BOOK_SHAPES = [(96, 54, 54), (96, 26, 26), (256, 26, 26), (256, 12, 12), (384, 12, 12), (384, 12, 12),
               (256, 12, 12), (256, 5, 5), (6400,), (4096,), (4096,), (4096,), (4096,), (10,)]


def test_shapes_at_224_are_the_books():
    assert [s.shape for s in layer_stats(224)] == BOOK_SHAPES


def test_parameters_and_flops_are_the_books():
    assert num_params(224) == 46_764_746
    assert forward_flops(224) == pytest.approx(1.88e9, rel=0.01)
    assert flat_features(224) == 6400


def test_param_shapes_are_canonical():
    shapes = param_shapes(224)
    assert shapes["conv1.weight"] == (96, 1, 11, 11) and shapes["dense1.weight"] == (4096, 6400)
    assert sum(math.prod(s) for s in shapes.values()) == 46_764_746


def test_smallest_input_is_67():
    assert MIN_RESIZE == 67
    assert layer_stats(67)[7].shape == (256, 1, 1)
    with pytest.raises(InputTooSmallError, match="--resize 67"):
        layer_stats(66)


def test_cli_prints_totals_and_split():
    out = subprocess.run([sys.executable, "-m", "common.spec"], capture_output=True, text=True,
                         check=True).stdout
    assert "46,764,746" in out and "convolutions" in out and "dense layers" in out
    proc = subprocess.run([sys.executable, "-m", "common.spec", "--resize", "40"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "too small" in proc.stderr


def test_the_flattened_shape_channels_last_backends_reorder_by():
    assert flat_chw(224) == (256, 5, 5) and flat_chw(100) == (256, 2, 2) and flat_chw(MIN_RESIZE) == (256, 1, 1)
