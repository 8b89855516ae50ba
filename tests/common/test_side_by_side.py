"""The backends mirror each other section by section; the side-by-side page is built from the code."""

from pathlib import Path

from common import side_by_side
from common.backends import BACKENDS, NAMES

FIRST, SECOND, *REST = NAMES


def test_every_section_exists_in_every_backend():
    assert side_by_side.check() == []


def write(root: Path, backend: str, text: str) -> None:
    (root / f"alexnet_{backend}").mkdir(parents=True, exist_ok=True)
    (root / f"alexnet_{backend}" / "model.py").write_text(text)


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
    row = page[page.index("The network"):]
    assert [row.index(f"{name}_net") for name in NAMES] == sorted(row.index(f"{name}_net") for name in NAMES)
    assert all(f"<th>{BACKENDS[name].title}</th>" in page for name in NAMES)
    assert "<h2>model.py</h2>" in page and "<h2>data.py</h2>" not in page
