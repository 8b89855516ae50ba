"""IDX reading, locating and downloading, with every malformed file refused clearly."""

import gzip
import hashlib
import http.server
import threading
import urllib.error
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from common import fashion_mnist as fm
from common.errors import DataError
from tests.synthetic import write_dataset


def idx(array: np.ndarray, dtype: int = 0x08) -> bytes:
    """IDX bytes for a uint8 array, with a chosen dtype code."""
    return bytes([0, 0, dtype, array.ndim]) + np.asarray(array.shape, ">u4").tobytes() + array.tobytes()


def test_reads_raw_and_gzip_alike(tmp_path):
    raw = fm.load(write_dataset(tmp_path / "raw"))
    gz = fm.load(write_dataset(tmp_path / "gz", gz=True))
    np.testing.assert_array_equal(raw.train_images, gz.train_images)
    assert raw.train_images.shape == (256, 28, 28) and raw.train_images.dtype == np.uint8
    assert raw.test_labels.dtype == np.int64 and not raw.official


def test_limits_keep_the_first_examples(tiny_data):
    full, part = fm.load(tiny_data), fm.load(tiny_data, train_limit=10, test_limit=5)
    np.testing.assert_array_equal(part.train_labels, full.train_labels[:10])
    assert len(part.test_labels) == 5


GOOD = np.zeros((2, 28, 28), np.uint8)
MALFORMED = {
    "bad magic": (b"\x01\x02" + idx(GOOD)[2:], "bad magic"),
    "wrong dtype": (idx(GOOD, dtype=0x0D), "type 0x0d"),
    "wrong ndim": (idx(np.zeros((2, 784), np.uint8)), "2 dimensions"),
    "cut header": (idx(GOOD)[:10], "truncated inside its header"),
    "truncated": (idx(GOOD)[:-5], "truncated"),
    "too long": (idx(GOOD) + b"\0", "too long"),
    "empty": (b"", "bad magic"),
}


@pytest.mark.parametrize("data, message", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_idx_is_refused_naming_the_file(tmp_path, data, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message) as e:
        fm.read_idx(path, 3)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def replace(directory: Path, name: str, data: bytes) -> None:
    """Swap one of the four files for other bytes."""
    (directory / name).write_bytes(data)


def test_wrong_image_size(tiny_data):
    replace(tiny_data, "t10k-images-idx3-ubyte", idx(np.zeros((64, 32, 32), np.uint8)))
    with pytest.raises(DataError, match="32x32 images, expected 28x28"):
        fm.load(tiny_data)


def test_counts_that_disagree(tiny_data):
    replace(tiny_data, "t10k-labels-idx1-ubyte", idx(np.zeros(63, np.uint8)))
    with pytest.raises(DataError, match="64 images but .* 63 labels"):
        fm.load(tiny_data)


def test_label_out_of_range(tiny_data):
    replace(tiny_data, "t10k-labels-idx1-ubyte", idx(np.full(64, 10, np.uint8)))
    with pytest.raises(DataError, match="label 10, outside 0..9"):
        fm.load(tiny_data)


def test_official_size_with_wrong_bytes_is_a_checksum_mismatch(tiny_data):
    replace(tiny_data, "t10k-labels-idx1-ubyte", idx(np.ones(10_000, np.uint8)))  # 10,008 bytes
    with pytest.raises(DataError, match="checksum mismatch.*t10k-labels-idx1-ubyte"):
        fm.load(tiny_data)


def test_truncated_and_non_gzip_files(tmp_path):
    data = write_dataset(tmp_path / "d", gz=True)
    path = data / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="truncated.*gzip"):
        fm.load(data)
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match="not a valid gzip file"):
        fm.load(data)


def test_unreadable_file(tiny_data, monkeypatch):
    def deny(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(DataError, match="cannot read .*Permission denied"):
        fm.load(tiny_data)


def test_missing_directory_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        fm.load(tmp_path / "nowhere")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(DataError, match="a-file .from --data-dir. is a file, not a directory"):
        fm.load(tmp_path / "a-file")
    data = write_dataset(tmp_path / "d")
    (data / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing in .*train-labels-idx1-ubyte.*apt-get install"):
        fm.load(data)


def test_search_order(tmp_path, monkeypatch):
    system, cache, env = (write_dataset(tmp_path / d, seed=i) for i, d in enumerate(("sys", "c", "env")))
    monkeypatch.setattr(fm, "SYSTEM_DIR", system)
    assert fm.load().source == system
    monkeypatch.setattr(fm, "cache_dir", lambda: cache)
    assert fm.load().source == cache
    monkeypatch.setenv(fm.ENV_VAR, str(env))
    assert fm.load().source == env
    assert fm.load(system).source == system  # --data-dir first


# ---- Downloading ----


@pytest.fixture
def tiny_mirror(tmp_path, monkeypatch) -> Path:
    """A directory of .gz files standing in for the mirror, with FILES patched to their hashes."""
    served = write_dataset(tmp_path / "mirror", gz=True)
    files = {}
    for key, f in fm.FILES.items():
        data = gzip.decompress((served / f"{f.name}.gz").read_bytes())
        files[key] = fm.IdxFile(f.name, f.ndim, len(data), hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(fm, "FILES", files)
    return served


def test_download_from_a_local_server(tiny_mirror, tmp_path, monkeypatch):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tiny_mirror))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(fm.MIRROR_VAR, f"http://127.0.0.1:{server.server_port}")  # its slash may be left out
        data = fm.load()  # nothing in the cache or the system directory: downloads
    finally:
        server.shutdown()
    assert data.source == fm.cache_dir() and data.official  # verified against the (patched) hashes
    assert sorted(p.name for p in fm.cache_dir().iterdir()) == sorted(f"{f.name}.gz" for f in fm.FILES.values())


class Response:
    """What urlopen returns, for a monkeypatched opener."""

    def __init__(self, data: bytes):
        self.data = data

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self) -> bytes:
        return self.data


def test_download_that_stops_half_way_leaves_no_partial_file(tiny_mirror, tmp_path):
    def opener(url, timeout):
        data = (tiny_mirror / url.rsplit("/", 1)[1]).read_bytes()
        return Response(data if "train-images" in url else data[: len(data) // 2])

    target = tmp_path / "dl"
    with pytest.raises(DataError, match="arrived incomplete"):
        fm.download(target, opener=opener)
    assert [p.name for p in target.iterdir()] == ["train-images-idx3-ubyte.gz"]  # verified, kept


def test_download_that_fails_says_how_to_get_the_data(tmp_path):
    def opener(url, timeout):
        raise urllib.error.URLError("no route to host")

    with pytest.raises(DataError, match="looked in .*download of .* failed .*apt-get install") as e:
        fm.locate(opener=opener)
    assert "--download" not in str(e.value)  # not the command that has just failed
    assert not list(fm.cache_dir().parent.glob("*/*"))


def test_a_download_with_nowhere_to_keep_it_says_where_to_put_it(tiny_mirror, tmp_path, monkeypatch):
    """A user without a home to cache in (a service's, a container's), a read-only folder, a full disk."""
    (tmp_path / "home").write_text("")  # a file where the cache's folder would be: the OS refuses the folder
    monkeypatch.setattr(fm, "cache_dir", lambda: tmp_path / "home" / ".cache" / "fashion-mnist")

    def opener(url, timeout):
        return Response((tiny_mirror / url.rsplit("/", 1)[1]).read_bytes())

    with pytest.raises(DataError, match=r"^Fashion-MNIST not found \(looked in .*\) and the download cannot be kept "
                                        r"in .*home/.cache/fashion-mnist \(Not a directory\): download into a folder "
                                        r"you can write with python -m common.fashion_mnist --download --data-dir DIR"):
        fm.locate(opener=opener)


def test_the_command_lists_the_files_a_run_would_use(tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    fm.main(["--data-dir", str(data)])
    printed = capsys.readouterr().out.splitlines()
    assert printed[:4] == [str(data / f.name) for f in fm.FILES.values()]
    assert printed[4].startswith("data: custom IDX data")


def test_download_with_wrong_bytes_is_refused(tiny_mirror, tmp_path):
    def opener(url, timeout):
        return Response(gzip.compress(b"not the dataset"))

    with pytest.raises(DataError, match="checksum mismatch"):
        fm.download(tmp_path / "dl", opener=opener)
    assert not list(tmp_path.glob("dl/*"))
