"""The Python API and the CLI are one code path: ``Trainer(cfg, out).fit()`` writes the run directory
``ms-suite train`` writes (with the recipe's summaries and profile window), and ``ms_suite.api``
evaluates and exports it as the commands do."""
import json
import os

import pytest

from conftest import ROOT, TINY
from ms_suite import api
from ms_suite.config import load_config
from ms_suite.engine.trainer import Trainer

RECIPE = os.path.join(ROOT, "configs", "quickstart.yaml")
# Every recorder a recipe can switch on, so a Python run that ignored one would miss its files.
RECORDERS = ["summary.enabled=true", "summary.every_n_steps=2", "profile.enabled=true", "profile.start_step=2",
             "profile.stop_step=3"]


def run_files(run_dir) -> set:
    """Paths in a run directory, with names that carry a time stamp or pid reduced to their kind."""
    found = set()
    for folder, _, files in os.walk(run_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), run_dir)
            found.add(rel.split(os.sep)[0] if rel.startswith("profiler") else
                      "events.summary" if name.startswith("events.") else rel)
    return found


@pytest.mark.slow
def test_python_trainer_writes_the_run_directory_the_cli_writes(tiny_run, tmp_path, cache_env):
    from conftest import cli

    cli_dir = tmp_path / "cli"
    cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(cli_dir), "--set", *TINY, *RECORDERS)
    summary = Trainer(load_config(RECIPE, [*TINY, *RECORDERS]), str(tmp_path / "python"), progress=False).fit()

    expected = run_files(cli_dir)
    assert {"metrics.jsonl", "summary.json", "config.yaml", "train.log", "events.summary", "profiler",
            "checkpoints/best.ckpt"} <= expected
    assert run_files(tmp_path / "python") == expected
    cli_summary = json.loads((cli_dir / "summary.json").read_text())
    assert set(summary) == set(cli_summary) and summary["mfu"] is not None
    assert summary["metrics"] == cli_summary["metrics"]  # same seed, same data: the same run


@pytest.mark.slow
def test_api_evaluates_and_exports_like_the_commands(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    checkpoint = str(run_dir / "checkpoints" / "best.ckpt")
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = api.evaluate(RECIPE, checkpoint, overrides=TINY)
    assert metrics["top1"] == pytest.approx(summary["metrics"]["top1"])
    deployed = api.export(RECIPE, checkpoint, str(tmp_path / "model.onnx"), overrides=TINY)
    assert deployed.format == "ONNX" and os.path.getsize(deployed.path) > 10_000
    assert all(p.top1_agreement == 100.0 for p in deployed.verification.parity)


def test_overrides_need_a_recipe_file():
    from ms_suite.errors import UserError

    with pytest.raises(UserError, match="overrides apply to a recipe file"):
        api.resolve_config(load_config(RECIPE), ["train.epochs=2"])
