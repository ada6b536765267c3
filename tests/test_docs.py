"""The project's docs stand on their own: nothing points outside the repository.

Users get the contract from README.md, docs/ and schemas/; an internal document that
lives beside the checkout is not theirs to read, so no file may cite it by name or by a
relative path out of the repository. Every numbered-section reference names a page of
docs/ and a section that page has, and every relative link in README.md and docs/
leads to a file (and heading) that exists.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCOPE_DIRS = ("docs", "schemas", "streams", "connectors", "bench", "tests", "scripts", "deploy")
SCOPE_FILES = ("README.md", "Dockerfile", "docker-compose.yml", "pyproject.toml", "SECURITY.md")
SKIP_PARTS = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis"}
# A citation of the internal documents: DESIGN (DESIGN.md, or DESIGN with a section number)
# or FRESHCHAT.md, or any path into the sibling `shared` directory.
FORBIDDEN = re.compile(r"DESIGN|FRESHCHAT\.md|shared[/]")


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
    assert {"README.md", "docs/reference.md", "docs/configuration.md", "schemas/contact.schema.json",
            "streams/settings.py"} <= names


def test_no_file_cites_the_internal_design_document():
    hits = []
    for path in _project_files():
        text = path.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not hits, ("cite README.md, docs/ or schemas/ instead of the internal design document:\n"
                      + "\n".join(hits))


SECTION = "\u00a7"  # the section sign, spelt out so that this file cites no section itself
# A run of section references: one number, a range (2–5), or a list (2, 4 or 2 and 4).
SECTION_RUN = re.compile(SECTION + r"\d+(?:[\u2013-]\d+)?(?:(?:,\s*|\s+and\s+)" + SECTION + r"\d+(?:[\u2013-]\d+)?)*")
SECTION_NUMBERS = re.compile(SECTION + r"(\d+)(?:[\u2013-](\d+))?")
# What precedes a run: a page name, plain ("docs/contacts.md §2"), in backticks, as a link
# ("[docs/contacts.md](docs/contacts.md) §2") or inside a link's text ("[contacts.md §4](…)").
PAGE_BEFORE = re.compile(r"([\w./-]+\.md)`?(?:\]\(([^)\s]+)\))?\s*$")
NUMBERED_HEADING = re.compile(r"^#{1,6} (\d+)\.", re.MULTILINE)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
# "README.md#commands", or a docstring's "(README, Commands)".
README_SECTION = re.compile(r"\bREADME(?:\.md)?(?:#([\w-]+)|, (?=[A-Z]))")


def _rel(path: Path) -> str:
    return path.resolve().relative_to(ROOT).as_posix()


def _doc_pages() -> list[Path]:
    return sorted((ROOT / "docs").glob("*.md"))


def _section_numbers(page: Path) -> set[int]:
    return {int(n) for n in NUMBERED_HEADING.findall(FENCE.sub("", page.read_text()))}


def _cited_page(source: Path, text_before: str) -> Path | None:
    """The page a run of section references names; in a docs page a bare number is its own."""
    match = PAGE_BEFORE.search(text_before)
    if match is None:
        return source if _rel(source).startswith("docs/") else None
    target = (match.group(2) or match.group(1)).split("#", 1)[0]
    candidates = [(base / target).resolve() for base in (source.parent, ROOT)]
    return next((c for c in candidates if c.is_file()), candidates[0])


def test_every_section_reference_names_a_docs_page_and_a_section_it_has():
    bad = []
    for path in _project_files():
        text = path.read_bytes().decode("utf-8", errors="replace")
        for run in SECTION_RUN.finditer(text):
            where = f"{_rel(path)}:{text.count(chr(10), 0, run.start()) + 1}: {run.group()}"
            page = _cited_page(path, text[:run.start()])
            if page is None or not page.is_file() or page.parent != ROOT / "docs":
                bad.append(f"{where} does not name a page of docs/")
                continue
            sections = _section_numbers(page)
            for first, last in SECTION_NUMBERS.findall(run.group()):
                wanted = set(range(int(first), int(last or first) + 1))
                if not wanted <= sections:
                    bad.append(f"{where}: {_rel(page)} has no section {sorted(wanted - sections)}")
    assert not bad, "section references must read like 'docs/contacts.md §2':\n" + "\n".join(bad)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE):
        slug = _slug(heading.replace("`", ""))
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *_doc_pages()]


def test_every_relative_link_in_the_docs_leads_somewhere():
    bad = []
    for page in _markdown_pages():
        text = re.sub(r"`[^`\n]*`", "code", FENCE.sub("", page.read_text()))
        for href in LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", href):
                continue  # http:, https:, mailto:
            target, _, anchor = href.partition("#")
            path = (page.parent / target).resolve() if target else page
            if not path.is_relative_to(ROOT):
                bad.append(f"{_rel(page)}: {href}: leads out of the repository")
            elif not path.exists():
                bad.append(f"{_rel(page)}: {href}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                bad.append(f"{_rel(page)}: {href}: {_rel(path)} has no such heading")
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_the_readme_maps_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    pages = {f"docs/{page.name}" for page in _doc_pages()}
    unmapped = sorted(page for page in pages if f"]({page})" not in readme)
    assert not unmapped, f"README.md's map of docs/ lacks {unmapped}"


def test_citations_of_a_readme_section_name_one_it_has():
    readme = (ROOT / "README.md").read_text()
    headings = set(re.findall(r"^#{1,6} (.+)$", FENCE.sub("", readme), re.MULTILINE))
    anchors = _anchors(ROOT / "README.md")
    bad = []
    for path in _project_files():
        text = path.read_bytes().decode("utf-8", errors="replace")
        for match in README_SECTION.finditer(text):
            anchor, after = match.group(1), text[match.end():match.end() + 80]
            known = anchor in anchors if anchor else any(after.startswith(h) for h in headings)
            if not known:
                bad.append(f"{_rel(path)}: {(match.group() + after).splitlines()[0][:60]}")
    assert not bad, "these cite README sections that moved to docs/:\n" + "\n".join(bad)
