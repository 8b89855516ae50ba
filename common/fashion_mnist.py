"""Fashion-MNIST: locate, download, verify and read the four IDX files (numpy only).

Run `python -m common.fashion_mnist [--data-dir DIR] [--download]` to see which files a
training run would use, or to fetch them.
"""

import gzip
import hashlib
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.atomic import atomic_path
from common.errors import DataError, Parser, path_arg, run_cli
from common.hparams import IMAGE_SIDE, NUM_CLASSES

ENV_VAR = "ALEXNET_DATA"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
MIRROR_VAR = "ALEXNET_MIRROR"  # another mirror, for example a local copy
MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
ELSEWHERE = ("`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the four files in a "
             f"directory and pass --data-dir DIR (or set {ENV_VAR})")
HOW_TO_GET = f"get them with `python -m common.fashion_mnist --download`, or {ELSEWHERE}"


@dataclass(frozen=True)
class IdxFile:
    """One of the four files: its name, IDX shape and the official decompressed size and hash."""

    name: str
    ndim: int
    size: int
    sha256: str


FILES = {
    "train_images": IdxFile("train-images-idx3-ubyte", 3, 47_040_016,
                            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train_labels": IdxFile("train-labels-idx1-ubyte", 1, 60_008,
                            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "test_images": IdxFile("t10k-images-idx3-ubyte", 3, 7_840_016,
                           "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "test_labels": IdxFile("t10k-labels-idx1-ubyte", 1, 10_008,
                           "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}


@dataclass
class FashionMNIST:
    """The dataset in memory: images uint8 (N, 28, 28), labels int64 (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: Path | str  # the folder read, or "random" for synthetic data
    official: bool  # every file matched the published checksum


# ---- Reading IDX ----


def _read_bytes(path: Path) -> bytes:
    """The decompressed bytes of a file, gzip or raw by its name."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}; check its permissions or {HOW_TO_GET}") from None
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise DataError(f"{path} is truncated (the gzip stream ends early): delete it and {HOW_TO_GET}") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        raise DataError(f"{path} is not a valid gzip file ({e}): delete it and {HOW_TO_GET}") from None


def parse_idx(data: bytes, ndim: int, where: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes of uint8 with `ndim` dimensions, checking every header field."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{where} is not an IDX file (bad magic number): delete it and {HOW_TO_GET}")
    if data[2] != 0x08:
        raise DataError(f"{where} holds IDX type 0x{data[2]:02x}, expected 0x08 (unsigned bytes): "
                        f"it is not Fashion-MNIST; {HOW_TO_GET}")
    if data[3] != ndim:
        raise DataError(f"{where} has {data[3]} dimensions, expected {ndim}: is it the right file? {HOW_TO_GET}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{where} is truncated inside its header: delete it and {HOW_TO_GET}")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "too long"
        raise DataError(f"{where} is {state}: its header promises {dims} ({expected:,} bytes) but it "
                        f"holds {len(data):,} bytes; delete it and {HOW_TO_GET}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file, gzip-compressed when the name ends in .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data = header + np.ascontiguousarray(array, np.uint8).tobytes()
    Path(path).write_bytes(gzip.compress(data, mtime=0) if str(path).endswith(".gz") else data)


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read and validate one IDX file (raw or .gz)."""
    return parse_idx(_read_bytes(path), ndim, str(path))


# ---- Locating ----


def _find(directory: Path, name: str) -> Path | None:
    """The file `name` or `name.gz` in `directory`, if either exists."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def cache_dir() -> Path:
    """Where downloads go: $XDG_CACHE_HOME/alexnet-d2l/fashion-mnist (default ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alexnet-d2l" / "fashion-mnist"


def search_dirs(data_dir: Path | None = None) -> list[Path]:
    """Where the files are looked for, in order; an explicit directory is the only place."""
    explicit = data_dir or os.environ.get(ENV_VAR)
    if explicit:
        directory = Path(explicit)
        if not directory.is_dir():
            source = "--data-dir" if data_dir else ENV_VAR
            what = "is a file, not a directory" if directory.exists() else "does not exist"
            raise DataError(f"data directory {directory} (from {source}) {what}: fix the path, or {HOW_TO_GET}")
        return [directory]
    return [cache_dir(), SYSTEM_DIR]


def locate(data_dir: Path | None = None, opener: Callable = urllib.request.urlopen) -> dict[str, Path]:
    """Paths of the four files: from the first directory holding all four, else a download."""
    dirs = search_dirs(data_dir)
    for directory in dirs:
        found = {key: _find(directory, f.name) for key, f in FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    explicit = data_dir or os.environ.get(ENV_VAR)
    if explicit:  # an explicit directory is the only place looked in, and never downloaded into
        missing = [f.name for f in FILES.values() if not _find(dirs[0], f.name)]
        raise DataError(f"Fashion-MNIST files missing in {dirs[0]}: {', '.join(missing)} "
                        f"(.gz or raw); {HOW_TO_GET}")
    try:
        return download(cache_dir(), opener=opener)
    except DataError as e:
        looked = ", ".join(str(d) for d in dirs)
        raise DataError(f"Fashion-MNIST not found (looked in {looked}) and {e}") from None


# ---- Downloading ----


def download(directory: Path, mirror: str | None = None, opener: Callable = urllib.request.urlopen,
             timeout: float = 60) -> dict[str, Path]:
    """Fetch the four .gz files, verify the decompressed bytes, and move each in place atomically."""
    mirror = mirror or os.environ.get(MIRROR_VAR, MIRROR)
    mirror = mirror if mirror.endswith("/") else mirror + "/"  # a folder's address, with or without its slash
    paths = {}
    for key, f in FILES.items():
        path = directory / f"{f.name}.gz"
        if not path.is_file():
            url = f"{mirror}{f.name}.gz"
            try:
                with opener(url, timeout=timeout) as response:
                    data = response.read()
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise DataError(f"the download of {url} failed ({e}): check the network (or set {MIRROR_VAR} to "
                                f"another mirror), or get the files with {ELSEWHERE}") from None
            _verify(gzip_bytes_to_idx(data, url), f, url)
            try:
                with atomic_path(path) as tmp:
                    tmp.write_bytes(data)
            except OSError as e:  # no home to cache in (a service's user), a read-only folder, a full disk
                raise DataError(f"the download cannot be kept in {directory} ({e.strerror or e}): download into a "
                                f"folder you can write with python -m common.fashion_mnist --download --data-dir "
                                f"DIR, then pass --data-dir DIR (or set XDG_CACHE_HOME for the cache)") from None
        paths[key] = path
    return paths


def gzip_bytes_to_idx(data: bytes, where: str) -> bytes:
    """Decompress a downloaded .gz, with a clear error for a cut-off transfer."""
    try:
        return gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError):
        raise DataError(f"{where} arrived incomplete or corrupt (not a whole gzip file); "
                        f"try again, or {HOW_TO_GET}") from None


def _verify(data: bytes, f: IdxFile, where: str) -> None:
    """Refuse bytes that claim to be an official file but do not match its sha256."""
    if hashlib.sha256(data).hexdigest() != f.sha256:
        raise DataError(f"checksum mismatch for {where}: it is not the published {f.name} "
                        f"(corrupt or altered); delete it and {HOW_TO_GET}")


# ---- Loading ----


def _load_file(path: Path, f: IdxFile) -> tuple[np.ndarray, bool]:
    """Read one file; a file of the official size must also match the official checksum."""
    data = _read_bytes(path)
    official = len(data) == f.size
    if official:
        _verify(data, f, str(path))
    return parse_idx(data, f.ndim, str(path)), official


def _split(images: np.ndarray, labels: np.ndarray, paths: dict, split: str,
           limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Check one split's images against its labels, and keep the first `limit` examples."""
    img_path, lbl_path = paths[f"{split}_images"], paths[f"{split}_labels"]
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(f"{img_path} holds {images.shape[1]}x{images.shape[2]} images, expected "
                        f"{IMAGE_SIDE}x{IMAGE_SIDE}: it is not Fashion-MNIST; {HOW_TO_GET}")
    if len(images) != len(labels):
        raise DataError(f"{img_path} has {len(images):,} images but {lbl_path} has {len(labels):,} "
                        f"labels: the files do not belong together; {HOW_TO_GET}")
    if len(labels) and labels.max() >= NUM_CLASSES:
        raise DataError(f"{lbl_path} has label {labels.max()}, outside 0..{NUM_CLASSES - 1}: "
                        f"it is not Fashion-MNIST; {HOW_TO_GET}")
    if len(images) == 0:
        raise DataError(f"{img_path} holds no images; {HOW_TO_GET}")
    return images[:limit].copy(), labels[:limit].astype(np.int64)  # writable, as frameworks want


def load(data_dir: Path | None = None, train_limit: int | None = None,
         test_limit: int | None = None, opener: Callable = urllib.request.urlopen) -> FashionMNIST:
    """Locate, verify and read Fashion-MNIST, keeping the first `*_limit` examples of each split."""
    paths = locate(data_dir, opener=opener)
    arrays, official = {}, True
    for key, f in FILES.items():
        arrays[key], ok = _load_file(paths[key], f)
        official = official and ok
    train = _split(arrays["train_images"], arrays["train_labels"], paths, "train", train_limit)
    test = _split(arrays["test_images"], arrays["test_labels"], paths, "test", test_limit)
    return FashionMNIST(*train, *test, source=paths["train_images"].parent, official=official)


def describe(data: FashionMNIST) -> str:
    """One line saying which data a run uses."""
    kind = "Fashion-MNIST (checksums verified)" if data.official else "custom IDX data (not the official files)"
    return (f"data: {kind} from {data.source}: {len(data.train_labels):,} training and "
            f"{len(data.test_labels):,} test images")


def main(argv: list[str] | None = None) -> None:
    """Show which files a run would use, or download them."""
    p = Parser(prog="python -m common.fashion_mnist", description=main.__doc__)
    p.add_argument("--data-dir", type=path_arg, default=None, help="look here only (or download here)")
    p.add_argument("--download", action="store_true", help="download into --data-dir or the cache")
    args = p.parse_args(argv)

    def run() -> None:
        if args.download:
            target = args.data_dir or cache_dir()
            print(f"downloaded and verified into {download(target)['train_images'].parent}")
        data = load(args.data_dir)  # verifies every file
        for path in locate(args.data_dir).values():
            print(path)
        print(describe(data))

    run_cli(run)


if __name__ == "__main__":
    main()
