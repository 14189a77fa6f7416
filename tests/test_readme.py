"""The README stays a short front page: the two commands first, every command named, working links,
and every measured number linked to a dated results page."""
import os
import re

from markdown.extensions.toc import slugify

from ms_suite.cli.main import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md")).read()
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A measured figure: a percentage, a duration or a throughput (not counts such as "8 epochs").
MEASURED = re.compile(r"\d(?:[\d.,]*)\s?(?:%|s\b|min\b|samples/s|GB\b|MB\b)")


def _prose_paragraphs(text: str):
    """Paragraphs outside fenced code blocks."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return [p for p in prose.split("\n\n") if p.strip()]


def _anchors(path: str) -> set:
    """Heading ids as mkdocs' toc extension makes them."""
    text = re.sub(r"```.*?```", "", open(path).read(), flags=re.S)
    return {slugify(m.group(1).strip(), "-") for m in re.finditer(r"^#+\s+(.*)$", text, flags=re.M)}


def test_two_commands_are_first():
    quickstart = README[: README.index("## Everyday commands")]
    first_block = re.search(r"```bash\n(.*?)```", README, flags=re.S).group(1)
    assert "make demo" in first_block and "make test" in first_block
    assert "make demo" in quickstart and "make test" in quickstart


def test_readme_is_short():
    assert README.count("\n") <= 250


def test_every_command_is_named():
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        assert f"ms-suite {name}" in README, name


def test_links_resolve():
    for target in LINK.findall(README):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        full = os.path.join(ROOT, path)
        assert os.path.exists(full), target
        if anchor:
            assert anchor in _anchors(full), target


def test_every_number_links_to_a_dated_results_page():
    for paragraph in _prose_paragraphs(README):
        if paragraph.lstrip().startswith("|"):
            continue  # tables hold no measurements (the device matrix)
        if MEASURED.search(paragraph):
            pages = [t for t in LINK.findall(paragraph) if t.startswith("docs/results/")]
            assert pages, f"a measured number without a link to docs/results/: {paragraph[:120]!r}"
            for page in pages:
                head = open(os.path.join(ROOT, page.partition("#")[0])).read()[:600]
                assert re.search(r"\| date \| \d{4}-\d\d-\d\d", head), f"{page} has no date line"
