"""Headless Chromium (Debian's package) driven by its own command line: no driver, no download.

    python -m tests.page.chromium screenshot docs/side_by_side.html shot.png [--fragment only=...]

`dump_dom` loads a page and returns its DOM after the page's scripts have run; `screenshot`
writes a PNG of the window. Nothing is fetched from the network.
"""

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--run-all-compositor-stages-before-draw", "--virtual-time-budget=3000")
TIMEOUT = 120


def binary() -> str | None:
    """The Chromium on PATH (Debian: chromium; elsewhere perhaps chromium-browser or google-chrome)."""
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def url(page: Path, fragment: str = "") -> str:
    return page.resolve().as_uri() + (f"#{fragment}" if fragment else "")


def _run(args: list[str], window: tuple[int, int]) -> subprocess.CompletedProcess:
    exe = binary()
    if exe is None:
        raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}",
                               *args], capture_output=True, text=True, timeout=TIMEOUT, check=True)


def dump_dom(page: Path, fragment: str = "", window: tuple[int, int] = (1600, 1000)) -> str:
    """The page's DOM, serialised after its scripts ran, at this window size."""
    return _run(["--dump-dom", url(page, fragment)], window).stdout


def screenshot(page: Path, png: Path, fragment: str = "", window: tuple[int, int] = (1600, 1000)) -> Path:
    """A PNG of the page's window (the top of the page, or of what the fragment shows)."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    _run([f"--screenshot={png}", url(page, fragment)], window)
    if not png.exists():
        raise RuntimeError(f"chromium wrote no screenshot to {png}")
    return png


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.page.chromium")
    sub = p.add_subparsers(dest="command", required=True)
    shot = sub.add_parser("screenshot", help="a PNG of a page in headless Chromium")
    shot.add_argument("page", type=Path)
    shot.add_argument("png", type=Path)
    shot.add_argument("--fragment", default="", help="what follows # in the URL, e.g. only=step-one-training-step")
    shot.add_argument("--width", type=int, default=1600)
    shot.add_argument("--height", type=int, default=1000)
    args = p.parse_args(argv)
    print(screenshot(args.page, args.png, args.fragment, (args.width, args.height)))


if __name__ == "__main__":
    main()
