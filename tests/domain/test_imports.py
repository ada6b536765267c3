"""Imports run one way: the domain imports no framework or I/O library, and streams/ never imports connectors/.

Read from the source with ast (nothing is imported), so a lazy import inside a function
counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("faust", "mode", "aiokafka", "aiohttp", "httpx")


def imported_modules(source: str) -> set[str]:
    """Every module a source imports, by its full dotted name."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def violations(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    """`path: module` for each import under folder of a forbidden package (or any module inside one)."""
    return [f"{path.relative_to(ROOT)}: {module}"
            for path in sorted(folder.rglob("*.py"))
            for module in sorted(imported_modules(path.read_text()))
            if any(module == f or module.startswith(f + ".") for f in forbidden)]


def test_the_check_sees_a_forbidden_import_wherever_it_stands():
    source = "import os\ndef later():\n    from aiokafka.errors import KafkaError\nimport faust.types as t\n"
    assert imported_modules(source) == {"os", "aiokafka.errors", "faust.types"}


def test_the_domain_imports_no_framework_and_no_io_library():
    assert violations(ROOT / "streams" / "domain", FRAMEWORKS) == []


def test_the_domain_imports_nothing_above_it():
    assert violations(ROOT / "streams" / "domain", ("connectors", "streams.worker")) == []


def test_streams_never_imports_connectors():
    assert violations(ROOT / "streams", ("connectors",)) == []
