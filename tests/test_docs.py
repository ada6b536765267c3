"""The project's docs stand on their own: nothing points outside the repository.

Users get the contract from README.md, docs/ and schemas/; an internal document that
lives beside the checkout is not theirs to read, so no file may cite it by name or by a
relative path out of the repository.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCOPE_DIRS = ("docs", "schemas", "streams", "connectors", "bench", "tests", "scripts", "deploy")
SCOPE_FILES = ("README.md", "Dockerfile", "docker-compose.yml", "pyproject.toml", "SECURITY.md")
SKIP_PARTS = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis"}
# A citation of the internal documents: DESIGN (DESIGN.md, DESIGN §2) or FRESHCHAT.md,
# or any path that climbs out to the sibling `shared` directory.
FORBIDDEN = re.compile(r"\bDESIGN\b|\bFRESHCHAT\.md|\.\./shared")


def _in_scope(rel: str) -> bool:
    return rel in SCOPE_FILES or rel.split("/", 1)[0] in SCOPE_DIRS


def _project_files() -> list[Path]:
    """Tracked and new (not ignored) files in scope; without git, a walk of the same paths."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
        rels = [line for line in out.splitlines() if line]
    except (OSError, subprocess.CalledProcessError):
        rels = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                if p.is_file() and not SKIP_PARTS & set(p.relative_to(ROOT).parts)]
    this = Path(__file__).resolve()
    return [ROOT / rel for rel in sorted(rels)
            if _in_scope(rel) and (ROOT / rel).is_file() and (ROOT / rel).resolve() != this]


def test_the_scope_covers_the_docs_and_the_code():
    names = {p.relative_to(ROOT).as_posix() for p in _project_files()}
    assert {"README.md", "docs/reference.md", "schemas/contact.schema.json", "streams/settings.py"} <= names


def test_no_file_cites_the_internal_design_document():
    hits = []
    for path in _project_files():
        text = path.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not hits, ("cite README.md, docs/ or schemas/ instead of the internal design document:\n"
                      + "\n".join(hits))
