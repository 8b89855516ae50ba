"""After training, framework-free: image preparation, top-3 lines, the evaluation, the figures, the weights' resize."""

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from safetensors.numpy import save_file

from common.cli import parse_args, predict_parser
from common.errors import UserError
from common.predict import (
    CLASSES,
    class_table,
    confusion_matrix,
    evaluation,
    image_files,
    light_background,
    prepare_image,
    prepare_images,
    softmax,
    top_k,
    top_line,
    write_evaluation,
    writing,
)
from common.spec import param_shapes
from common.weights import load_weights, read_metadata, recorded_resize, save_weights

PNG = b"\x89PNG\r\n\x1a\n"


def _photo(path: Path, size: tuple[int, int] = (300, 150)) -> Path:
    """A colour photo-like picture: a dark-blue object, taller than wide, on a light, slightly noisy ground."""
    rng = np.random.default_rng(0)
    ground = (225 + rng.integers(0, 20, (size[1], size[0], 3))).astype(np.uint8)
    image = Image.fromarray(ground, "RGB")
    ImageDraw.Draw(image).rectangle([120, 15, 179, 134], fill=(20, 40, 110))  # 60 wide, 120 high
    image.save(path, quality=95)
    return path


def _fashion_like(path: Path) -> tuple[Path, np.ndarray]:
    """A Fashion-MNIST-like 28x28 grey picture: a light object filling the height, centred on black."""
    grey = np.zeros((28, 28), np.uint8)
    grey[:, 8:20] = 200
    grey[10:18, 11:17] = 250
    Image.fromarray(grey).save(path)
    return path, grey


# ---- Your own images ----


def test_a_light_background_photo_is_inverted_and_fitted_by_aspect(tmp_path):
    image, inverted = prepare_image(_photo(tmp_path / "photo.jpg"))
    assert inverted and image.shape == (28, 28) and image.dtype == np.uint8
    # The object (120 high, 60 wide) fills the height and half the width, light, centred; the rest is black.
    assert image[:, 11:17].min() > 180 and image[:, :6].max() == 0 and image[:, 22:].max() == 0
    assert light_background(np.asarray(Image.open(tmp_path / "photo.jpg").convert("L")))


def test_a_fashion_mnist_like_picture_is_kept_as_it_is(tmp_path):
    path, grey = _fashion_like(tmp_path / "item.png")
    image, inverted = prepare_image(path)
    assert not inverted
    np.testing.assert_array_equal(image, grey)


def test_no_invert_keeps_a_light_background(tmp_path):
    image, inverted = prepare_image(_photo(tmp_path / "photo.jpg"), invert=False)
    assert not inverted and image[14, 14] < 80  # the dark object stays dark


def test_transparency_counts_as_a_light_background(tmp_path):
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # transparent black
    ImageDraw.Draw(rgba).rectangle([10, 5, 29, 34], fill=(90, 30, 30, 255))
    rgba.save(tmp_path / "cut-out.png")
    image, inverted = prepare_image(tmp_path / "cut-out.png")
    assert inverted and image[14, 14] > 150 and image[0, 0] == 0


def test_small_and_large_pictures_come_out_28x28(tmp_path):
    thin = Image.new("L", (9, 30), 255)
    thin.paste(0, (3, 5, 6, 25))  # a dark bar on white
    thin.save(tmp_path / "thin.png")
    _photo(tmp_path / "big.jpg", (1200, 900))
    images, inverted = prepare_images(image_files([tmp_path]))
    assert images.shape == (2, 28, 28) and inverted == [True, True]


def test_directories_give_their_image_files_in_order(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in image_files([tmp_path])] == ["a.JPG", "b.png"]
    assert image_files([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]  # a file given is tried whatever its name


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"hello, not a picture", "not an image Pillow can read"),
    (PNG + b"\x00\x00\x00\rIHDR" + b"\x00" * 9, "damaged or unreadable"),
])
def test_bad_files_are_refused_in_one_line(tmp_path, content, message):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(UserError, match=message):
        prepare_image(tmp_path / "bad.png")


def test_a_16_bit_32_bit_or_float_picture_reads_as_its_8_bit_self_and_a_blank_one_is_refused(tmp_path):
    photo = np.asarray(Image.open(_photo(tmp_path / "photo.png")).convert("L"), dtype=np.uint16)
    Image.fromarray(photo * 257).save(tmp_path / "deep.png")  # 16-bit grey: mode I;16 (or I)
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    expected = prepare_image(tmp_path / "photo.png")[0]
    np.testing.assert_array_equal(prepare_image(tmp_path / "deep.png")[0], expected)
    for name, values in [("floats.tif", photo.astype(np.float32) / 255), ("bytes.tif", photo.astype(np.float32)),
                         ("ints.tif", photo.astype(np.int32)), ("deep_ints.tif", photo.astype(np.int32) * 257)]:
        Image.fromarray(values).save(tmp_path / name)  # mode F or I: 0..1, 0..255 or 0..65535
        assert Image.open(tmp_path / name).mode in ("F", "I")
        np.testing.assert_array_equal(prepare_image(tmp_path / name)[0], expected, err_msg=name)
    see_through = np.where(photo > 200, 7, photo * 257).astype(np.uint16)  # the light ground: one value, tRNS
    Image.fromarray(see_through).save(tmp_path / "clear.png", transparency=7)
    white = np.where(photo > 200, 255, photo).astype(np.uint8)
    Image.fromarray(white).save(tmp_path / "white.png")  # transparency becomes white, as in 8-bit pictures
    np.testing.assert_array_equal(prepare_image(tmp_path / "clear.png")[0], prepare_image(tmp_path / "white.png")[0])
    for shade in (0, 255):
        Image.new("L", (40, 40), shade).save(tmp_path / "blank.png")
        with pytest.raises(UserError, match="shows no object to classify"):
            prepare_image(tmp_path / "blank.png")


def test_a_folder_or_too_many_pixels_is_named_for_what_it_is(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="is a directory, not a picture: give one image file"):
        prepare_image(tmp_path)
    _photo(tmp_path / "photo.png", (300, 150))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # Pillow refuses over twice this: 45,000 > 20,000
    with pytest.raises(UserError, match="has more pixels than Pillow opens .*give a smaller copy of it"):
        prepare_image(tmp_path / "photo.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40_000)  # between the limit and twice it, Pillow only warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a phone's 108-megapixel photo: classified without a word of warning
        assert prepare_image(tmp_path / "photo.png")[0].shape == (28, 28)


def test_tiny_missing_and_truncated_pictures_are_refused(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(UserError, match="only 1x1 pixels"):
        prepare_image(tmp_path / "dot.png")
    buf = io.BytesIO()
    _photo(tmp_path / "photo.jpg")
    Image.open(tmp_path / "photo.jpg").save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    with pytest.raises(UserError, match="damaged or unreadable"):
        prepare_image(tmp_path / "cut.png")
    with pytest.raises(UserError, match="does not exist"):
        image_files([tmp_path / "nowhere.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no image files"):
        image_files([tmp_path / "empty"])


def test_a_bad_picture_stops_the_batch_before_any_work(tmp_path):
    path, _ = _fashion_like(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(UserError, match="bad.png"):
        prepare_images([path, tmp_path / "bad.png"])


# ---- Probabilities ----


def test_top_three_line_and_probabilities():
    logits = np.array([[0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 2.0, 0.0, 0.0, 1.0]])
    probs = softmax(logits)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    e = np.exp([3.0, 2.0, 1.0])
    total = e.sum() + 7
    assert [c for c, _ in top_k(probs[0])] == ["coat", "shirt", "ankle boot"]
    assert top_line("shoe.png", probs[0]) == (f"shoe.png: coat {e[0] / total:.3f}, shirt {e[1] / total:.3f}, "
                                              f"ankle boot {e[2] / total:.3f}")
    assert np.isfinite(softmax(np.array([[1e4, 0.0] + [0.0] * 8]))).all()  # no overflow


# ---- Evaluation ----


def test_confusion_matrix_of_a_known_prediction_set():
    y = np.array([0, 0, 1, 1, 1, 9, 9, 5])
    y_hat = np.array([0, 6, 1, 1, 7, 9, 5, 5])
    confusion = confusion_matrix(y, y_hat)
    expected = np.zeros((10, 10), int)
    for t, p in [(0, 0), (0, 6), (1, 1), (1, 1), (1, 7), (9, 9), (9, 5), (5, 5)]:
        expected[t, p] += 1
    np.testing.assert_array_equal(confusion, expected)
    result = evaluation(y, y_hat)
    assert result["accuracy"] == 5 / 8 and result["examples"] == 8
    assert result["per_class"]["t-shirt"] == {"accuracy": 0.5, "count": 2}
    assert result["per_class"]["trouser"]["accuracy"] == pytest.approx(2 / 3)
    assert result["per_class"]["sandal"] == {"accuracy": 1.0, "count": 1}
    assert result["per_class"]["bag"] == {"accuracy": None, "count": 0}  # none in the split: no accuracy


def test_per_class_table_names_every_class():
    table = class_table(evaluation(np.array([0, 1, 1]), np.array([0, 1, 2])))
    lines = table.splitlines()
    assert lines[0].split() == ["class", "accuracy", "images"] and len(lines) == 12
    assert lines[1].split() == ["t-shirt", "1.000", "1"] and lines[2].split() == ["trouser", "0.500", "2"]
    assert lines[9].split() == ["bag", "-", "0"] and lines[-1].split() == ["all", "0.667", "3"]
    assert [line.rsplit(maxsplit=2)[0] for line in lines[1:11]] == list(CLASSES)


def test_figures_are_written_as_pngs(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (40, 28, 28), dtype=np.uint8)
    y, y_hat = rng.integers(0, 10, 40), rng.integers(0, 10, 40)
    paths = write_evaluation(tmp_path / "figs", evaluation(y, y_hat), images, y, y_hat, "a title")
    assert [p.name for p in paths] == ["confusion.png", "predictions.png"]
    assert all(p.read_bytes()[:8] == PNG for p in paths)
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["confusion.png", "predictions.png"]


def test_an_unwritable_output_directory_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UserError, match="cannot write to .*choose another --out-dir"):
        with writing(tmp_path / "a-file" / "figs"):
            pass


# ---- The resize comes from the weights ----


def _weights_file(path: Path, resize: int) -> Path:
    weights = {k: np.zeros(s, np.float32) for k, s in param_shapes(resize).items()}
    save_weights(path, weights, resize, "torch")
    return path


def test_the_resize_is_read_from_the_weights(tmp_path):
    path = _weights_file(tmp_path / "w.safetensors", 67)
    assert read_metadata(path)["backend"] == "torch"
    assert recorded_resize(path) == 67 and recorded_resize(path, 67) == 67
    with pytest.raises(UserError, match="input size 67, not 100: pass --resize 67"):
        recorded_resize(path, 100)


def test_weights_without_a_recorded_resize_need_the_flag(tmp_path):
    from safetensors.numpy import save_file

    save_file({k: np.zeros(s, np.float32) for k, s in param_shapes(80).items()}, tmp_path / "bare.safetensors")
    with pytest.raises(UserError, match="does not record the input size.*pass --resize"):
        recorded_resize(tmp_path / "bare.safetensors")
    assert recorded_resize(tmp_path / "bare.safetensors", 80) == 80
    save_file({"conv.weight": np.zeros(1, np.float32)}, tmp_path / "other.safetensors")  # another model's
    with pytest.raises(UserError, match=r"does not hold AlexNet's neutral weights \(16 of its 16 tensors missing: "
                                        r"conv1.bias, conv1.weight, ...; 1 not AlexNet's: conv.weight\): "
                                        r"pass a run's weights.safetensors"):
        recorded_resize(tmp_path / "other.safetensors", 80)  # before a --resize that could not help


def test_missing_and_corrupt_weights_files_are_one_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_metadata(tmp_path / "none.safetensors")
    with pytest.raises(UserError, match="is a directory"):
        read_metadata(tmp_path)
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(UserError, match="not a readable safetensors"):
        read_metadata(tmp_path / "junk.safetensors")


def test_a_run_directory_stands_for_its_weights_and_a_checkpoint_is_refused_by_name(tmp_path):
    run = tmp_path / "runs" / "torch"
    run.mkdir(parents=True)
    assert predict_parser("torch").parse_args(["--weights", str(run)]).weights == run / "weights.safetensors"
    assert parse_args("torch", ["--init-weights", str(run)]).init_weights == run / "weights.safetensors"
    save_file({"net.conv1.kernel": np.zeros(1, np.float32)}, run / "checkpoint-004.safetensors")  # JAX's
    for checkpoint in ("checkpoint-003.pt", "checkpoint-001-00027.weights.h5", "checkpoint-002.params",
                       "checkpoint-004.safetensors"):
        if not (run / checkpoint).exists():
            (run / checkpoint).write_bytes(b"PK\x03\x04 a framework's own format")
        for read in (read_metadata, lambda path: load_weights(path, 67)):
            with pytest.raises(UserError, match=f"{checkpoint} is a training checkpoint.*pass "
                                                f"{run / 'weights.safetensors'}"):
                read(run / checkpoint)
    _weights_file(run / "checkpoint-005.safetensors", 67)  # neutral weights, whatever their name
    assert read_metadata(run / "checkpoint-005.safetensors")["resize"] == "67"
    quick = tmp_path / "runs" / "torch-quick"
    _weights_file(quick / "weights.safetensors", 67)
    with pytest.raises(UserError, match=f"does not exist: .*these runs have one: {quick}\\)$"):  # after --quick
        read_metadata(run / "weights.safetensors")
    with pytest.raises(UserError, match=f"these runs have one: {quick}\\)$"):  # `runs` given for a run in it
        read_metadata(tmp_path / "runs" / "weights.safetensors")


# ---- Flags ----


def test_predict_flags_default_to_the_run_weights():
    args = predict_parser("torch").parse_args([])
    assert args.weights == Path("runs/torch/weights.safetensors") and args.images == []
    assert args.resize is None and args.out_dir is None and not args.no_invert


def test_init_weights_cannot_resume(tmp_path):
    with pytest.raises(UserError, match="--init-weights starts a new run.*drop one"):
        parse_args("torch", ["--init-weights", str(tmp_path / "w.safetensors"), "--resume"])
    assert parse_args("torch", ["--init-weights", "w.safetensors"]).init_weights == Path("w.safetensors")
