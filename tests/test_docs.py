"""Every citation in the project points inside the repository: docs/<page>.md#<anchor> exists,
and nothing cites the design notes that live outside it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*ROOT.glob("src/vwe/**/*.py"), *ROOT.glob("src/vwe/configs/*.yaml"),
           *ROOT.glob("tests/**/*.py"), *ROOT.glob("benchmarks/*.py"), ROOT / "README.md",
           *ROOT.glob("docs/*.md")]
CITATION = re.compile(r"docs/([a-z_-]+\.md)(?:#([a-z0-9-]+))?")
RELATIVE_LINK = re.compile(r"\]\(([a-z_-]+\.md)(?:#([a-z0-9-]+))?\)")  # between docs pages
NOTE_PAGES = ("irn", "seg", "vwe", "vwe-authors-code", "synthetic")  # the notes outside the repo
OUTSIDE = re.compile("spec" + r"s/|\b(?:" + "|".join(NOTE_PAGES) + r")\.md\b")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces → '-'."""
    found = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return found


def test_every_docs_citation_exists():
    problems = []
    for source in SOURCES:
        for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            links = CITATION.findall(line)
            if source.parent.name == "docs":
                links += RELATIVE_LINK.findall(line)
            for page, anchor in links:
                target = ROOT / "docs" / page
                if not target.is_file():
                    problems.append(f"{source.relative_to(ROOT)}:{number}: no docs/{page}")
                elif anchor and anchor not in anchors(target):
                    problems.append(f"{source.relative_to(ROOT)}:{number}: no #{anchor} in "
                                    f"docs/{page}")
    assert problems == []


def test_nothing_cites_notes_outside_the_repository():
    hits = []
    for source in SOURCES:
        if source.parent.name == "docs" or source.name == "test_docs.py":
            continue  # docs link each other by bare page names
        for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            cleaned = CITATION.sub("", line)
            if OUTSIDE.search(cleaned) or "§" in cleaned:
                hits.append(f"{source.relative_to(ROOT)}:{number}: {line.strip()[:80]}")
    assert hits == []
