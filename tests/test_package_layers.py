"""The packages depend one way: clipstore <- extractors <- probes (the workflow uses all three)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

BELOW = {"clipstore": {"extractors", "probes"}, "extractors": {"probes"}}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(BELOW))
def test_lower_packages_never_import_higher_ones(package: str) -> None:
    offending = {str(path.relative_to(REPO)): sorted(imported_packages(path) & BELOW[package])
                 for path in sorted((REPO / package).rglob("*.py"))}
    assert {path: found for path, found in offending.items() if found} == {}
