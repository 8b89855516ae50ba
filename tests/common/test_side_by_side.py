"""The backends mirror each other section by section; the side-by-side page is built from the code."""

from pathlib import Path

from common import side_by_side


def test_every_section_exists_in_every_backend():
    assert side_by_side.check() == []


def write(root: Path, backend: str, text: str) -> None:
    (root / f"alexnet_{backend}").mkdir(parents=True, exist_ok=True)
    (root / f"alexnet_{backend}" / "model.py").write_text(text)


def test_a_missing_or_extra_section_is_reported(tmp_path):
    write(tmp_path, "torch", "import a\n# ---- The network ----\nx = 1\n# ---- Layer shapes ----\ny = 2\n")
    write(tmp_path, "tf", "import b\n# ---- The network ----\nx = 1\n")
    write(tmp_path, "mxnet", "import c\n# ---- The network ----\n# ---- Layer shapes ----\n# ---- Extra ----\n")
    assert sorted(side_by_side.check(tmp_path)) == [
        "alexnet_mxnet/model.py has the section 'Extra' that alexnet_torch lacks",
        "alexnet_tf/model.py lacks the section 'Layer shapes'",
    ]


def test_page_aligns_sections(tmp_path):
    write(tmp_path, "torch", "# ---- The network ----\nnet = torch_net()\n")
    write(tmp_path, "tf", "# ---- The network ----\nnet = keras_net()\n")
    write(tmp_path, "mxnet", "# ---- The network ----\nnet = gluon_net()\n")
    page = side_by_side.render(tmp_path)
    row = page[page.index("The network"):]
    assert row.index("torch_net") < row.index("keras_net") < row.index("gluon_net")
    assert "<h2>model.py</h2>" in page and "<h2>data.py</h2>" not in page
