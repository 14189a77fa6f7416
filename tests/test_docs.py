"""The docs site matches the code: strict build, current generated references, every command, model and
recipe documented, no history narration, and the command blocks marked runnable still run."""
import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, TINY
from ms_suite.cli.docs_reference import stale_pages
from ms_suite.cli.main import build_parser
from ms_suite.models import list_models

DOCS = os.path.join(ROOT, "docs")
RUNNABLE = re.compile(r"<!-- runnable -->\n```bash\n(.*?)```", re.S)
# Commands that take a recipe: the test appends TINY to their --set so they run in seconds.
RECIPE_COMMANDS = {"train", "eval", "export"}
HISTORY = ["this session", "earlier in this project", "what this measurement changed", "predates",
           "previously", "at commit time of this readme", "then removed"]


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def _pages(include_reference: bool = True) -> dict:
    paths = glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True)
    return {os.path.relpath(p, DOCS): _read(p) for p in paths
            if include_reference or not p.startswith(os.path.join(DOCS, "reference"))}


def test_site_builds_in_strict_mode(tmp_path):
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    config = load_config(os.path.join(ROOT, "mkdocs.yml"), strict=True, site_dir=str(tmp_path / "site"))
    build(config)  # strict: any broken link, missing anchor or page left out of nav aborts
    assert (tmp_path / "site" / "index.html").is_file()
    nav_pages = set(re.findall(r":\s*(\S+\.md)\s*$", _read(os.path.join(ROOT, "mkdocs.yml")), flags=re.M))
    assert nav_pages == set(_pages()), "every page under docs/ is in mkdocs.yml's nav, and only those"


def test_generated_references_are_current():
    assert stale_pages() == [], "regenerate with `python -m ms_suite.cli.docs_reference`"


def test_every_command_is_described_in_a_guide():
    guides = "\n".join(_pages(include_reference=False).values())
    for name in build_parser()._subparsers._group_actions[0].choices:
        assert f"ms-suite {name}" in guides, name


def test_every_model_and_recipe_is_documented():
    docs = "\n".join(_pages().values())
    guides = "\n".join(_pages(include_reference=False).values())
    for name in list_models():
        assert f"`{name}`" in docs, name
    for path in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True):
        rel = os.path.relpath(path, ROOT)
        assert f"`{rel}`" in docs, rel
        assert os.path.basename(path) in guides, f"{rel} is in no guide"


def test_no_history_narration():
    texts = {f"docs/{k}": v for k, v in _pages().items() if k != "changelog.md"}
    texts["README.md"] = _read(os.path.join(ROOT, "README.md"))
    for folder in ("ms_suite", "model_zoo", "benchmarks", "configs", "scripts"):
        for path in glob.glob(os.path.join(ROOT, folder, "**", "*.*"), recursive=True):
            if path.endswith((".py", ".yaml", ".sh")):
                texts[os.path.relpath(path, ROOT)] = _read(path)
    for where, text in texts.items():
        lowered = text.lower()
        found = [phrase for phrase in HISTORY if phrase in lowered]
        assert not found, f"{where} narrates history ({found}); that belongs in docs/changelog.md"


# --------------------------------------------------------------------------- runnable command blocks


def runnable_blocks():
    """(page, block text) for every ```bash block preceded by ``<!-- runnable -->``."""
    pages = {"README.md": _read(os.path.join(ROOT, "README.md"))}
    pages.update({f"docs/{k}": v for k, v in _pages(include_reference=False).items()})
    return [(page, block) for page, text in sorted(pages.items()) for block in RUNNABLE.findall(text)]


def tiny_command(line: str) -> list:
    """One documented command as argv: ``ms-suite`` run from this checkout, recipe commands made tiny."""
    argv = shlex.split(line, comments=True)
    assert argv[0] == "ms-suite", f"runnable blocks hold ms-suite commands only: {line}"
    argv = [sys.executable, "-m", "ms_suite", *argv[1:]]
    if argv[3] in RECIPE_COMMANDS:
        at = argv.index("--set") + 1 if "--set" in argv else len(argv)
        argv[at:at] = TINY if "--set" in argv else ["--set", *TINY]
    return argv


def test_tiny_command_merges_into_an_existing_set():
    argv = tiny_command("ms-suite train -c r.yaml --set data.path=x --output-dir o  # comment")
    assert argv[3:] == ["train", "-c", "r.yaml", "--set", *TINY, "data.path=x", "--output-dir", "o"]
    assert tiny_command("ms-suite rank-table validate t.json")[3:] == ["rank-table", "validate", "t.json"]


def test_the_docs_mark_representative_blocks_runnable():
    commands = " ".join(block for _, block in runnable_blocks())
    for command in ("ms-suite train", "ms-suite eval", "ms-suite export", "ms-suite rank-table"):
        assert command in commands, command


@pytest.mark.slow
@pytest.mark.parametrize("page,block", runnable_blocks(), ids=lambda v: v if v.endswith(".md") else "")
def test_runnable_block_runs(page, block, tmp_path, cache_env):
    """Run the block's commands in order, in a fresh folder that sees the repository's recipes."""
    os.symlink(os.path.join(ROOT, "configs"), tmp_path / "configs")
    env = {**os.environ, **cache_env, "PYTHONPATH": ROOT}
    for line in block.replace("\\\n", " ").splitlines():
        if not shlex.split(line, comments=True):
            continue
        proc = subprocess.run(tiny_command(line), cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, f"{page}: `{line.strip()}` exited {proc.returncode}:\n{proc.stderr[-2000:]}"
