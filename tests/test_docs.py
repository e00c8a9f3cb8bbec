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


# Modules that are command lines: the pages of docs/ describe them, not the API reference.
ENTRY_POINTS = {"train", "eval", "predict", "export", "serve", "report"}


def reference_entries() -> dict[str, bool]:
    """Each module an API reference page renders, and whether it is rendered whole (no options)."""
    entries = {}
    for page in (ROOT / "docs" / "reference").glob("*.md"):
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if match := re.match(r"::: (\S+)$", line):
                following = lines[number + 1] if number + 1 < len(lines) else ""
                entries[match.group(1)] = not following.strip().startswith("options:")
    return entries


def exports_names(package: str) -> bool:
    init = ROOT.joinpath(*package.split("."), "__init__.py")
    return "__all__" in init.read_text(encoding="utf-8")


def test_every_module_is_on_an_api_reference_page() -> None:
    entries = reference_entries()
    for path in sorted((ROOT / "ser_lightning").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
        if parts[-1] == "__main__" or parts[1:] in [(), *((name,) for name in ENTRY_POINTS)]:
            continue
        # a package rendered whole shows the names its modules export (its __all__)
        parents = (".".join(parts[:n]) for n in range(2, len(parts)))
        covered = module in entries or any(entries.get(p) and exports_names(p) for p in parents)
        assert covered, f"{module} is on no page of docs/reference (and in mkdocs.yml's nav)"
    for module in entries:
        path = ROOT.joinpath(*module.split("."))
        exists = path.with_suffix(".py").exists() or (path / "__init__.py").exists()
        assert exists, f"docs/reference names {module}, which does not exist"
