"""The README and docs/ as a reader follows them: every relative link and image resolves, every #anchor names a
heading of its page (GitHub's slugs), and the README stays short enough to read in five minutes."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(path: Path) -> str:
    """The page without its fenced code blocks, where brackets are code, not links."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path).splitlines():
        if m := re.match(r"#{1,6} (.+)", line):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links():
    for page in PAGES:
        for target in LINK.findall(prose(page)):
            if not re.match(r"[a-z]+:", target):
                yield pytest.param(page, target, id=f"{page.relative_to(REPO)}->{target}")


@pytest.mark.parametrize("page,target", list(links()))
def test_relative_link_resolves(page, target):
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    assert file.exists(), f"{page.relative_to(REPO)} links to {path}, which does not exist"
    if anchor:
        assert anchor in anchors(file), f"{page.relative_to(REPO)}: no heading #{anchor} in {file.relative_to(REPO)}"


def test_every_docs_page_is_reachable_from_the_readme():
    linked = {(REPO / t.partition("#")[0]).resolve() for t in LINK.findall(prose(REPO / "README.md"))}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def test_readme_is_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 300


def test_slugs_follow_github():
    assert slug("`fdf-build serve DATASET [--host 127.0.0.1]` - a page") == "fdf-build-serve-dataset---host-127001---a-page"
    assert slug("FDF256 reference vs fdf_build default") == "fdf256-reference-vs-fdf_build-default"
