"""The README matches the code: config reference, commands, models and recipes."""
import glob
import os

from ms_suite.cli.main import build_parser
from ms_suite.config.reference import END, START, markdown_reference
from ms_suite.models import list_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md")).read()


def test_config_reference_is_current():
    start, end = README.index(START), README.index(END) + len(END)
    assert README[start:end] == markdown_reference(), \
        "README config reference is stale: regenerate with `python -m ms_suite.config.reference`"


def test_every_command_is_documented():
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        assert f"ms-suite {name}" in README, name


def test_every_model_and_recipe_is_documented():
    for name in list_models():
        assert f"`{name}`" in README, name
    for path in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True):
        stem = os.path.splitext(os.path.basename(path))[0]
        assert stem in README, os.path.relpath(path, ROOT)


def test_two_commands_are_first():
    quickstart = README[: README.index("## Everyday commands")]
    assert "make demo" in quickstart and "make test" in quickstart
