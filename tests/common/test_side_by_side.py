"""The backends mirror each other section by section; the side-by-side page is built from the code.

The page's behaviour in a browser (columns, links, no wrapping, compact mode, screenshot) is
tests/page/test_side_by_side_page.py, run by `nox -s side_by_side`.
"""

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common import side_by_side
from common.backends import BACKENDS, NAMES

FIRST, SECOND, *REST = NAMES
ROOT = side_by_side.ROOT
PAGE = ROOT / "docs" / "side_by_side.html"


def test_every_section_exists_in_every_backend():
    assert side_by_side.check() == []


def write(root: Path, backend: str, text: str, name: str = "model.py") -> None:
    (root / f"alexnet_{backend}").mkdir(parents=True, exist_ok=True)
    (root / f"alexnet_{backend}" / name).write_text(text, encoding="utf-8")


def test_a_missing_or_extra_section_is_reported(tmp_path):
    both = "import a\n# ---- The network ----\nx = 1\n# ---- Layer shapes ----\ny = 2\n"
    write(tmp_path, FIRST, both)
    write(tmp_path, SECOND, "import b\n# ---- The network ----\nx = 1\n")
    for name in REST:
        write(tmp_path, name, both + "# ---- Extra ----\n")
    assert sorted(side_by_side.check(tmp_path)) == sorted([
        f"alexnet_{SECOND}/model.py lacks the section 'Layer shapes'",
        *[f"alexnet_{name}/model.py has the section 'Extra' that alexnet_{FIRST} lacks" for name in REST],
    ])


def test_page_has_a_column_per_backend_in_the_lists_order(tmp_path):
    for name in NAMES:
        write(tmp_path, name, f"# ---- The network ----\nnet = {name}_net()\n")
    page = side_by_side.render(tmp_path)
    row = page[page.index("id='model-the-network'"):]
    assert re.findall(r"<div class='col' data-backend='(\w+)'", row) == list(NAMES)
    assert [row.index(f"{name}_net") for name in NAMES] == sorted(row.index(f"{name}_net") for name in NAMES)
    assert all(f"<div class='colhead'>{BACKENDS[name].title}" in page for name in NAMES)
    assert "id='model'" in page and "id='data'" not in page
    boxes = re.findall(r"<input type='checkbox' value='(\w+)' checked>", page)
    assert boxes == list(NAMES)  # the header's boxes that pick the columns, all shown at first


def test_a_file_one_backend_lacks_still_gets_its_column(tmp_path):
    for name in NAMES:
        write(tmp_path, name, "# ---- The network ----\nnet = 1\n")
    write(tmp_path, FIRST, "# ---- Minibatches ----\nb = 1\n", "data.py")
    page = side_by_side.render(tmp_path)
    data = page[page.index("id='data-minibatches'"):]
    assert re.findall(r"<div class='col' data-backend='(\w+)'", data) == list(NAMES)
    assert f"not in alexnet_{SECOND}/data.py" in data


def test_anchors_are_the_file_stem_and_the_titles_slug():
    assert side_by_side.slug("Fast path (opt-in)") == "fast-path-opt-in"
    assert side_by_side.anchor("train.py", "The training loop") == "train-the-training-loop"
    assert side_by_side.anchor("train.py", side_by_side.PREAMBLE) == "train-imports"
    page = side_by_side.render()
    ids = re.findall(r" id='([^']+)'", page)
    assert len(ids) == len(set(ids))
    for target in re.findall(r"href='#(?:only=)?([^']*)'", page):
        assert target == "" or target in ids, target
    for name in side_by_side.FILES:
        for title in side_by_side.sections(ROOT / f"alexnet_{FIRST}" / name):
            sid = side_by_side.anchor(name, title)
            assert f"id='{sid}'" in page and f"href='#{sid}'" in page and f"href='#only={sid}'" in page


def text_of(html_line: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", html_line))


def test_code_is_highlighted_with_its_indentation_intact():
    code = 'def f(x):\n    """Doc\n    string."""\n\n        return x  # two <levels> & more\n'
    lines = side_by_side.highlight(code)
    assert [text_of(line) for line in lines] == code.rstrip("\n").split("\n")
    assert "<span class=\"k\">def</span>" in lines[0]
    assert all(line.count("<span") == line.count("</span>") for line in lines)  # each line self-contained
    page = side_by_side.render()
    assert "white-space: pre;" in page and "pre-wrap" not in page


def test_the_real_sections_survive_highlighting_line_for_line():
    page = side_by_side.render()
    for b in NAMES:
        if not (ROOT / f"alexnet_{b}" / "train.py").exists():
            continue
        line, code = side_by_side.numbered_sections(ROOT / f"alexnet_{b}" / "train.py")["The training loop"]
        col = page[page.index("id='train-the-training-loop'"):]
        col = col[col.index(f"<div class='col' data-backend='{b}'>"):]
        col = col[:col.index("</pre>")]
        assert f"alexnet_{b}/train.py:{line}<" in col
        source = (ROOT / f"alexnet_{b}" / "train.py").read_text(encoding="utf-8").splitlines()
        assert source[line - 1] == code.splitlines()[0]
        got = [text_of(x) for x in re.findall(r"<span class='l \w'>(.*?)</span>(?=<span class='l|</code>)", col)]
        assert got == code.splitlines()


def test_lines_every_backend_shares_are_marked_apart_from_those_that_differ(tmp_path):
    for name in NAMES:
        write(tmp_path, name, f"# ---- Step ----\ndef step(x):\n    y = {name}.grad(x)\n\n    return y  # {name}'s\n"
                              f"    # {name}\n    # the same\n")
    page = side_by_side.render(tmp_path)
    kinds = re.findall(r"<span class='l (\w)'>", page)
    assert kinds == ["s", "d", "b", "s", "d", "s"] * len(NAMES)  # a comment after shared code: still shared


def test_sections_link_the_api_table_row_and_the_readmes_why_item():
    docs = side_by_side.read_docs()
    anchors = {side_by_side.anchor(name, t) for name in side_by_side.FILES
               for t in side_by_side.sections(ROOT / f"alexnet_{FIRST}" / name)}
    assert set(side_by_side.STEPS) <= anchors and set(side_by_side.WHY) <= anchors
    for sid, steps in side_by_side.STEPS.items():
        name = sid.split("-")[0] + ".py"
        title = next(t for t in side_by_side.sections(ROOT / f"alexnet_{FIRST}" / name)
                     if side_by_side.anchor(name, t) == sid)
        code = "\n".join(side_by_side.sections(ROOT / f"alexnet_{b}" / name).get(title, "")
                         for b in NAMES if (ROOT / f"alexnet_{b}" / name).exists())
        for step in steps:
            assert step in docs.steps, f"docs/frameworks.md has no row '{step}'"
            apis = [a for cell in docs.steps[step].values() for a in re.findall(r"`([^`]+)`", cell)]
            assert any(a.strip(".") in code for a in apis), f"{sid} shows none of the APIs of '{step}'"
    linked = {w for items in side_by_side.WHY.values() for w in items}
    assert linked == set(docs.why), f"not in the README: {linked - set(docs.why)}, linked nowhere: " \
                                    f"{set(docs.why) - linked}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(f"- **{w}.** " in readme for w in linked)  # the text the links scroll to, and the page's form
    assert docs.steps_anchor == "the-api-each-framework-uses-step-by-step"
    assert docs.why_anchor == "the-frameworks-side-by-side-what-differs-and-why"
    page = side_by_side.render()
    section = page[page.index("id='step-one-training-step'"):]
    section = section[:section.index("<div class='cols'>")]
    assert "href='../docs/frameworks.md#the-api-each-framework-uses-step-by-step:~:text=gradient%20step'" in section
    fast = page[page.index("id='step-fast-path-opt-in'"):]
    assert ":~:text=fast%20path%3A%20precision%20%28--fast%29'" in fast[:fast.index("<div class='cols'>")]  # no ``
    assert "href='../README.md#the-frameworks-side-by-side-what-differs-and-why:~:text=Loss%20scaling.'" in section


def test_the_page_is_self_contained_and_its_relative_links_resolve():
    page = side_by_side.render()
    assert not re.search(r"<link|<img|<iframe|\bsrc=|@import|url\(|href=['\"]?(?:https?:)?//", page)
    for target in set(re.findall(r"href='([^'#]+)", page)):
        assert (ROOT / "docs" / target).resolve().exists(), target


def test_only_keeps_one_file_or_one_section(tmp_path):
    one = side_by_side.render(only="step-one-training-step")
    assert re.findall(r"<section class='sec' id='([^']+)'", one) == ["step-one-training-step"]
    columns = re.findall(r"<div class='col' data-backend=", one)
    assert len(columns) == len([b for b in NAMES if (ROOT / f"alexnet_{b}").is_dir()])
    data = side_by_side.render(only="data")
    assert {s.split("-")[0] for s in re.findall(r"<section class='sec' id='([^']+)'", data)} == {"data"}
    with pytest.raises(ValueError, match="no file or section"):
        side_by_side.render(only="nope")
    for pasted in ("#only=step-one-training-step&font=large", "side_by_side.html?only=step-one-training-step"):
        assert side_by_side.render(only=pasted) == one
    assert side_by_side.render(only="data.py") == data
    assert side_by_side.default_out("#only=data").name == "side_by_side-data.html"  # not the whole page
    assert side_by_side.default_out(None).resolve() == PAGE
    out = tmp_path / "deeper" / "step.html"
    side_by_side.main(["--only", "step-one-training-step", "--out", str(out)])
    written = out.read_text(encoding="utf-8")
    links = set(re.findall(r"href='([^'#]+)", written))
    assert links and all((out.parent / target).resolve().exists() for target in links), links
    assert written == side_by_side.render(only="step-one-training-step", up=side_by_side.way_up(out))


def test_check_takes_the_whole_page_only(capsys):
    with pytest.raises(SystemExit) as stop:
        side_by_side.main(["--check", "--only", "train"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "leave out --only" in err and err.count("\n") == 1


def test_check_flag_reports_a_stale_page(tmp_path, capsys):
    out = tmp_path / "page.html"
    out.write_text("old")
    with pytest.raises(SystemExit) as stop:
        side_by_side.main(["--check", "--out", str(out)])
    assert stop.value.code == 1 and "stale" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        side_by_side.main(["--check", "--out", str(tmp_path / "none.html")])
    assert stop.value.code == 1 and "does not exist" in capsys.readouterr().out
    side_by_side.main(["--out", str(out)])
    side_by_side.main(["--check", "--out", str(out)])
    assert "up to date" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:  # a file where a folder should be: one line, no traceback
        side_by_side.main(["--out", str(out / "page.html")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(f"error: cannot write {out / 'page.html'} (") and \
        err.endswith("): choose another --out\n") and err.count("\n") == 1, err


def test_the_page_is_the_same_where_text_is_not_utf8_by_default(tmp_path):
    """Windows reads and writes text in its own code page unless told otherwise; here an ASCII locale stands in."""
    out = tmp_path / "page.html"
    ascii_locale = {**os.environ, "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    proc = subprocess.run([sys.executable, "-m", "common.side_by_side", "--out", str(out)], env=ascii_locale,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(encoding="utf-8") == side_by_side.render(up=side_by_side.way_up(out))


def test_the_committed_page_is_up_to_date():
    """docs/side_by_side.html is committed so that it opens from a clone without Python; it must be
    what the code gives now. Made with another Pygments release, only its text has to agree."""
    assert PAGE.exists(), "docs/side_by_side.html is missing: python -m common.side_by_side"
    assert not side_by_side.stale(PAGE.read_text(encoding="utf-8"), side_by_side.render()), \
        "docs/side_by_side.html is stale: regenerate it with python -m common.side_by_side (or nox -s side_by_side)"


def test_a_page_is_stale_in_its_bytes_with_the_same_pygments_and_in_its_text_with_another():
    fresh = side_by_side.render(only="step-one-training-step")

    def recolour(page: str) -> str:  # what another Pygments may do: the same code, other classes
        return page.replace("<span class=\"k\">", "<span class=\"kn\">")

    def retext(page: str) -> str:  # a change to the code shown
        head, body = page.split("</style>", 1)
        return head + "</style>" + body.replace(">net<", ">met<", 1)

    assert recolour(fresh) != fresh and retext(fresh) != fresh
    assert not side_by_side.stale(fresh, fresh)
    assert side_by_side.stale(recolour(fresh), fresh) and side_by_side.stale(retext(fresh), fresh)
    older = fresh.replace(f"Pygments {side_by_side.pygments_version()}", "Pygments 1.0")
    assert older != fresh
    assert not side_by_side.stale(recolour(older), fresh) and side_by_side.stale(retext(older), fresh)
