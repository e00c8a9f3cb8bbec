"""The README is the front door to docs/: its links must lead somewhere.

`make docs` (mkdocs build --strict) checks the links between the pages of docs/; the README is
not part of the site, so its relative links, and the headings they name in docs pages, are
checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    found, fenced = set(), False
    for line in markdown.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.+)", line)):
            found.add(github_anchor(match.group(1)))
    return found


def readme_links() -> list[str]:
    text = re.sub(r"```.*?```", "", README.read_text(encoding="utf-8"), flags=re.S)
    return [link for link in LINK.findall(text) if not re.match(r"[a-z]+:", link)]


@pytest.mark.parametrize("link", readme_links())
def test_readme_link_leads_to_a_file_and_heading(link: str) -> None:
    path, _, anchor = link.partition("#")
    target = (ROOT / path) if path else README
    assert target.exists(), f"README links to {path}, which does not exist"
    if anchor and target.suffix == ".md":
        assert anchor in anchors(target), f"README links to #{anchor}, not a heading of {target.name}"


def test_readme_names_the_commands_a_newcomer_runs() -> None:
    text = README.read_text(encoding="utf-8")
    for command in ("make train", "make test", "make docs", "make install"):
        assert command in text, command


def test_every_docs_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in sorted((ROOT / "docs").rglob("*.md")):
        assert page.relative_to(ROOT / "docs").as_posix() in nav, f"{page} is not in mkdocs.yml's nav"
