"""The side-by-side page in a real browser: Debian's headless Chromium opens it and reads its DOM.

Run by `nox -s side_by_side` (which regenerates docs/side_by_side.html first); skipped, with the
reason, where no Chromium is installed (Debian: apt-get install chromium; .ci/run installs it).
SIDE_BY_SIDE_SHOTS=DIR keeps the screenshots there.
"""

import html
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from common import side_by_side
from common.backends import NAMES
from tests.page import chromium

pytestmark = pytest.mark.skipif(chromium.binary() is None,
                                reason="no Chromium on PATH: apt-get install chromium (CI's .ci/run does)")

# Runs in the page after its own script: the results go into <pre id="page-check"> for --dump-dom.
CHECK = """
<script>
(function () {
  function lines() {
    var bad = [], count = 0;
    document.querySelectorAll("pre.code").forEach(function (pre) {
      if (!pre.offsetParent) return;  // hidden (compact mode)
      var one = parseFloat(getComputedStyle(pre).lineHeight);
      pre.querySelectorAll(".l").forEach(function (l) {
        count++;
        var h = l.getBoundingClientRect().height;
        if (Math.abs(h - one) > 1.5) bad.push([l.closest("section.sec").id, l.textContent, h, one]);
      });
    });
    return {count: count, wrapped: bad.slice(0, 5), nwrapped: bad.length};
  }
  function shown() {  // per section: the backends of the columns shown, and how many lines are muted
    var columns = {}, muted = {};
    document.querySelectorAll("section.sec").forEach(function (s) {
      columns[s.id] = Array.from(s.querySelectorAll(".col")).filter(function (c) {
        return getComputedStyle(c).display !== "none"; }).map(function (c) { return c.dataset.backend; });
      muted[s.id] = Array.from(s.querySelectorAll(".col:not(.off) .l.s")).length;
    });
    var boxes = Array.from(document.querySelectorAll("#pick input"));
    var first = document.querySelector("section.sec .col:not(.off)");
    return {columns: columns, muted: muted, width: first.getBoundingClientRect().width,
      checked: boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; }),
      cells: document.querySelectorAll("td.off, th.off").length};
  }
  function steps() {  // compact mode's previous and next links: where each goes, its text, whether it shows
    return ["prev", "next"].map(function (id) {
      var a = document.getElementById(id);
      return [a.getAttribute("href"), a.textContent, getComputedStyle(a).display !== "none"];
    });
  }
  var out = {sections: {}, toc: [], unresolved: [], scrolls: 0, steps: steps()};
  document.querySelectorAll("section.sec").forEach(function (s) {
    out.sections[s.id] = Array.from(s.querySelectorAll(".col")).map(function (c) {
      return c.dataset.backend + ":" + (c.querySelector("pre.code") ? "code" : "missing");
    });
  });
  document.querySelectorAll("a[href^='#']").forEach(function (a) {
    var target = a.getAttribute("href").slice(1).replace(/^only=/, "");
    if (a.closest("nav#contents")) out.toc.push(target);
    if (target && !document.getElementById(target)) out.unresolved.push(a.getAttribute("href"));
  });
  document.querySelectorAll("pre.code").forEach(function (p) { if (p.scrollWidth > p.clientWidth) out.scrolls++; });
  out.visible = Array.from(document.querySelectorAll("section.sec")).filter(function (s) {
    return s.offsetParent !== null; }).map(function (s) { return s.id; });
  out.normal = lines();
  out.background = getComputedStyle(document.body).backgroundColor;
  var code = document.querySelector("pre.code");
  out.font = [parseFloat(getComputedStyle(code).fontSize)];
  document.getElementById("font-toggle").click();
  out.font.push(parseFloat(getComputedStyle(code).fontSize));
  out.large = lines();
  out.shown = shown();
  var hash = new URLSearchParams(location.hash.slice(1));
  hash.set("only", "step-one-training-step");  // an "only this section" link
  history.replaceState(null, "", "#" + hash.toString().replace(/%2C/g, ","));
  window.dispatchEvent(new HashChangeEvent("hashchange"));
  out.moved = shown();
  out.moved.steps = steps();
  document.dispatchEvent(new KeyboardEvent("keydown", {key: "ArrowRight"}));  // a presenter's remote
  out.moved.arrow = location.hash;
  document.querySelector("#pick input:checked").click();  // the first backend shown, off
  out.clicked = shown();
  var pre = document.createElement("pre");
  pre.id = "page-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """The page as the code gives it now, with the check script added, beside a copy of the docs it links."""
    folder = tmp_path_factory.mktemp("page")
    path = folder / "side_by_side.html"
    path.write_text(side_by_side.render().replace("</body>", CHECK + "</body>"), encoding="utf-8")
    return path


def results(page: Path, fragment: str = "") -> dict:
    dom = chromium.dump_dom(page, fragment)
    found = re.search(r'<pre id="page-check">(.*?)</pre>', dom, re.DOTALL)
    assert found, f"the check script wrote nothing; the DOM ends with {dom[-500:]!r}"
    return json.loads(html.unescape(found.group(1)))


def present() -> list[str]:
    """The backends whose files exist (all of NAMES once a new backend's folder has landed)."""
    return [b for b in NAMES if (side_by_side.ROOT / f"alexnet_{b}").is_dir()]


def test_every_backend_column_in_every_section_and_the_contents_resolve(page):
    got = results(page)
    expected = [anchor for name in side_by_side.FILES
                for anchor in (side_by_side.anchor(name, t) for t in side_by_side.sections(
                    side_by_side.ROOT / f"alexnet_{NAMES[0]}" / name))]
    assert list(got["sections"]) == expected
    for sid, cols in got["sections"].items():
        assert cols == [f"{b}:code" for b in present()], sid
    assert got["unresolved"] == []
    assert set(expected) <= set(got["toc"])
    assert got["visible"] == expected
    assert got["background"] == "rgb(255, 255, 255)"  # light by default


def expected_muted(names: list[str]) -> dict[str, int]:
    """Per section, the lines (blank ones aside) that every one of these backends has, counted in each."""
    out = {}
    for name in side_by_side.FILES:
        parts = {b: side_by_side.sections(side_by_side.ROOT / f"alexnet_{b}" / name) for b in names}
        for title in dict.fromkeys(t for p in parts.values() for t in p):
            codes = [p[title] for p in parts.values() if title in p]
            columns = [[side_by_side.line_key(lit) for lit in side_by_side.highlight(c)] for c in codes]
            shared = side_by_side.shared_lines(columns) if len(codes) == len(names) > 1 else set()
            keys = [key for column in columns for key in column]
            out[side_by_side.anchor(name, title)] = sum(key in shared for key in keys)
    return out


def test_the_boxes_pick_the_columns_and_the_muted_lines_follow(page):
    every = present()
    got = results(page)
    assert got["shown"]["checked"] == every
    assert all(cols == every for cols in got["shown"]["columns"].values())
    assert got["shown"]["muted"] == expected_muted(every)  # the script agrees with the page as written
    assert got["shown"]["cells"] == 0
    rest = every[1:]  # after a click on the first box
    assert got["clicked"]["checked"] == rest
    assert all(cols == rest for cols in got["clicked"]["columns"].values())
    assert got["clicked"]["muted"] == expected_muted(rest)
    assert got["clicked"]["cells"] > 0  # the API tables' cells of that backend too


def test_backends_in_the_url_show_those_columns_wider(page):
    two = [present()[0], present()[-1]]
    got = results(page, f"backends={','.join(two)}")
    assert got["shown"]["checked"] == two
    assert all(cols == two for cols in got["shown"]["columns"].values())
    muted = got["shown"]["muted"]
    assert muted == expected_muted(two)
    every = expected_muted(present())
    assert sum(muted.values()) / 2 > sum(every.values()) / len(present())  # per column: two share more lines
    assert got["normal"]["nwrapped"] == 0
    assert got["shown"]["width"] > 1.8 * results(page)["shown"]["width"]  # half the columns, twice as wide
    assert got["moved"]["checked"] == two  # following a link keeps the choice
    assert got["moved"]["columns"]["step-one-training-step"] == two
    choice = f"backends={','.join(two)}"
    assert got["moved"]["steps"][1][0] == f"#{choice}&only=parallel-imports"  # the next one keeps the choice
    assert got["moved"]["arrow"] == f"#{choice}&only=parallel-imports"


def test_no_code_line_wraps_at_either_font_size(page):
    got = results(page)
    assert got["normal"]["count"] > 500
    assert got["normal"]["nwrapped"] == 0, got["normal"]["wrapped"]
    assert got["scrolls"] > 0  # long lines scroll sideways instead
    assert got["font"][1] > got["font"][0] * 1.3  # the large-font toggle
    assert got["large"]["count"] == got["normal"]["count"]
    assert got["large"]["nwrapped"] == 0, got["large"]["wrapped"]


@pytest.mark.parametrize(("only", "shown", "steps"), [
    ("step-one-training-step", ["step-one-training-step"],
     [["#only=step-evaluation", "\u2190 Evaluation"], ["#only=parallel-imports", "\u2192 parallel.py: (imports)"]]),
    ("data", ["data-imports", "data-resizing-on-the-device", "data-minibatches", "data-loading"],
     [["#only=model", "\u2190 model.py"], ["#only=step", "\u2192 step.py"]]),
])
def test_compact_mode_shows_one_section_or_one_file(page, only, shown, steps):
    got = results(page, f"only={only}")
    assert got["visible"] == shown
    assert got["normal"]["nwrapped"] == 0
    assert [[href, text] for href, text, _ in got["steps"]] == steps  # the previous and next ones
    assert all(show for *_, show in got["steps"])


def test_the_whole_page_has_no_previous_or_next_and_the_arrows_step_on(page):
    got = results(page)
    assert got["steps"] == [[None, "", False], [None, "", False]]
    assert got["moved"]["arrow"] == "#only=parallel-imports"


def nonblank(png: Path) -> None:
    from PIL import Image

    with Image.open(png) as im:
        grey = im.convert("L")
        width, height = grey.size
        assert (width, height) == (1600, 1000)
        hist = grey.histogram()
        dark = sum(hist[:160]) / (width * height)  # text, not background
        assert dark > 0.01, f"{png} is nearly blank ({dark:.2%} dark pixels)"
        assert len(im.convert("RGB").getcolors(1 << 20) or []) > 50, f"{png} has hardly any colours"


@pytest.mark.parametrize("fragment", ["", "only=step-one-training-step&font=large"], ids=["top", "step-large"])
def test_screenshot_is_not_blank(tmp_path, fragment):
    path = tmp_path / "side_by_side.html"
    path.write_text(side_by_side.render(), encoding="utf-8")
    png = chromium.screenshot(path, tmp_path / "shot.png", fragment)
    nonblank(png)
    keep = os.environ.get("SIDE_BY_SIDE_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / f"side_by_side-{fragment.split('&')[0].replace('=', '-') or 'top'}.png")
