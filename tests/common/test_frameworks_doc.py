"""docs/frameworks.md names only APIs that the backends really call."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = {2: "torch", 3: "tf", 4: "mxnet"}


def source(backend: str) -> str:
    return "\n".join(p.read_text() for p in (ROOT / f"alexnet_{backend}").glob("*.py"))


def test_every_api_in_the_table_is_in_the_code():
    rows = [line for line in (ROOT / "docs" / "frameworks.md").read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| ---") and not line.startswith("| step")]
    assert len(rows) >= 10
    missing = []
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        for column, backend in COLUMNS.items():
            code = source(backend)
            for name in re.findall(r"`([^`]+)`", cells[column - 1]):
                if name.startswith("alexnet_"):
                    continue
                if name not in code:
                    missing.append(f"{cells[0]}: {name} not in alexnet_{backend}")
    assert missing == []
