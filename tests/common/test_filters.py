"""conv1's filters as one image grid (common.filters), from the neutral weights file alone."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from common import filters
from common.errors import UserError
from common.spec import MIN_RESIZE, param_shapes
from common.weights import save_weights


def weights_with(conv1: np.ndarray, resize: int = MIN_RESIZE) -> dict[str, np.ndarray]:
    """Neutral weights at `resize`: zeros, and the given conv1 filters."""
    weights = {name: np.zeros(shape, np.float32) for name, shape in param_shapes(resize).items()}
    weights["conv1.weight"] = conv1
    return weights


def random_conv1() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((96, 1, 11, 11)).astype(np.float32)


def test_the_grid_has_8_rows_of_12_cells_with_gaps():
    for scale in (1, 6):
        grid = filters.filter_grid(random_conv1(), scale)
        side = 11 * scale
        assert grid.shape == (filters.GAP + 8 * (side + filters.GAP), filters.GAP + 12 * (side + filters.GAP))
        assert grid.dtype == np.uint8
        assert (grid[:filters.GAP] == 255).all() and (grid[:, :filters.GAP] == 255).all()  # the white frame


def test_a_known_filter_lands_in_its_cell_stretched_to_its_own_range():
    conv1 = np.zeros((96, 1, 11, 11), np.float32)
    conv1[13, 0, 0, 0] = 0.001  # filter 13: row 1, column 1; one tiny bright weight, the rest 0
    conv1[95, 0, :, 5] = -7.0  # the last filter: a dark vertical bar on 0
    grid = filters.filter_grid(conv1, scale=2)
    top, left = filters.cell_origin(13, 2)
    assert (top, left) == (filters.GAP + 22 + filters.GAP, filters.GAP + 22 + filters.GAP)
    cell = grid[top:top + 22, left:left + 22]
    assert (cell[:2, :2] == 255).all()  # stretched to its own range: the tiny weight becomes white
    assert cell[2:, :].max() == 0 and cell[:, 2:].max() == 0
    top, left = filters.cell_origin(95, 2)
    last = grid[top:top + 22, left:left + 22]
    assert (last[:, 10:12] == 0).all() and (last[:, :10] == 255).all() and (last[:, 12:] == 255).all()
    assert (grid[top + 22:] == 255).all() and (grid[:, left + 22:] == 255).all()  # the bottom-right corner
    untouched = filters.cell_origin(0, 2)
    assert (grid[untouched[0]:untouched[0] + 22, untouched[1]:untouched[1] + 22] == 128).all()  # constant: mid-grey


def test_the_command_writes_the_png_beside_the_weights_whatever_the_resize(tmp_path, capsys):
    conv1 = random_conv1()
    save_weights(tmp_path / "weights.safetensors", weights_with(conv1, 100), 100, "test")
    filters.main([str(tmp_path / "weights.safetensors")])
    image = Image.open(tmp_path / filters.DEFAULT_NAME)
    assert image.mode == "L"
    np.testing.assert_array_equal(np.asarray(image), filters.filter_grid(conv1))
    assert "96 filters" in capsys.readouterr().out
    out = tmp_path / "figs" / "f.png"
    filters.main([str(tmp_path / "weights.safetensors"), "--out", str(out), "--scale", "3"])
    assert Image.open(out).size == (filters.GAP + 12 * (33 + filters.GAP), filters.GAP + 8 * (33 + filters.GAP))
    assert [p.name for p in out.parent.iterdir()] == ["f.png"]  # no temporary file left
    (tmp_path / filters.DEFAULT_NAME).unlink()
    filters.main([str(tmp_path)])  # the run's directory stands for its weights.safetensors
    assert (tmp_path / filters.DEFAULT_NAME).is_file()
    (tmp_path / "checkpoint-002.pt").write_bytes(b"PK")
    with pytest.raises(UserError, match="checkpoint-002.pt is a training checkpoint"):
        filters.main([str(tmp_path / "checkpoint-002.pt")])


@pytest.mark.parametrize("make, phrase", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_bytes(b"not a safetensors file at all"), "not a readable safetensors"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: save_file({"dense1.weight": np.zeros((2, 2), np.float32)}, str(p)), "holds no conv1.weight"),
    (lambda p: save_file({"conv1.weight": np.zeros((96, 3, 11, 11), np.float32)}, str(p)), r"shape \(96, 3, 11, 11\)"),
    (lambda p: save_file({"conv1.weight": np.full((96, 1, 11, 11), np.nan, np.float32)}, str(p)), "NaN"),
])
def test_bad_weights_files_are_refused_by_name(tmp_path, make, phrase):
    path = tmp_path / "w.safetensors"
    make(path)
    with pytest.raises(UserError, match=phrase) as e:
        filters.write_filters(path)
    assert str(path) in str(e.value)
    assert not (tmp_path / filters.DEFAULT_NAME).exists()


def test_an_output_that_cannot_be_written_is_one_line(tmp_path):
    save_weights(tmp_path / "w.safetensors", weights_with(random_conv1()), MIN_RESIZE, "test")
    with pytest.raises(UserError, match="is a directory"):
        filters.write_filters(tmp_path / "w.safetensors", tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot write"):
        filters.write_filters(tmp_path / "w.safetensors", tmp_path / "file" / "f.png")  # a file as a folder
    with pytest.raises(UserError, match="f.jpg: the grid is written as a PNG: give a name ending in .png"):
        filters.write_filters(tmp_path / "w.safetensors", tmp_path / "f.jpg")
    with pytest.raises(UserError, match="--scale 99"):
        filters.write_filters(tmp_path / "w.safetensors", scale=99)


def test_the_command_line_says_one_line_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "common.filters", str(tmp_path / "none.safetensors")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: weights file {tmp_path / 'none.safetensors'} does not "
                                                f"exist: check the path (a run writes <out>/weights.safetensors)"]
