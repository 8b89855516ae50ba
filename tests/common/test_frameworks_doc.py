"""docs/frameworks.md has a column per backend, and names only APIs that the backends really call."""

import re
from pathlib import Path

from common.backends import NAMES

ROOT = Path(__file__).resolve().parents[2]


def source(backend: str) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / f"alexnet_{backend}").glob("*.py"))


def table() -> list[list[str]]:
    """The API table's rows (the header first), as lists of cells."""
    lines = [line for line in (ROOT / "docs" / "frameworks.md").read_text(encoding="utf-8").splitlines()
             if line.startswith("| ") and not line.startswith("| ---")]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]


def test_the_table_has_a_column_per_backend_in_order():
    header = table()[0]
    assert [re.search(r"`alexnet_(\w+)`", cell).group(1) for cell in header[1:]] == list(NAMES)


def test_every_api_in_the_table_is_in_the_code():
    rows = table()[1:]
    assert len(rows) >= 10
    missing = []
    for cells in rows:
        assert len(cells) == len(NAMES) + 1, cells
        for backend, cell in zip(NAMES, cells[1:], strict=True):
            code = source(backend)
            for name in re.findall(r"`([^`]+)`", cell):
                if not name.startswith("alexnet_") and name not in code:
                    missing.append(f"{cells[0]}: {name} not in alexnet_{backend}")
    assert missing == []
