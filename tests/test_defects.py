"""Regression tests for the first-hour defects of issue 16 (best metric on resume, seeded dropout,
Ctrl-C, untouched run directories on failure, one-line errors, WordPiece vocab, compile cache)."""
import glob
import json
import os

import pytest

from conftest import TINY, cli

QUICKSTART = "configs/quickstart.yaml"


def _meta(path):
    from ms_suite.models.weights import read_checkpoint

    return read_checkpoint(path)[1]


@pytest.mark.slow
def test_step_checkpoints_carry_the_best_metric_and_resume_keeps_it(tmp_path, cache_env):
    run = tmp_path / "run"
    steps = [*TINY, "train.epochs=2", "checkpoint.every_n_steps=5", "checkpoint.keep_last=20"]
    cli("train", "-c", QUICKSTART, "--output-dir", str(run), "--set", *steps)
    summary = json.loads((run / "summary.json").read_text())
    first_epoch = _meta(str(run / "checkpoints" / "step_00000022.ckpt"))  # 1437 samples / 64 = 22 steps
    assert first_epoch["epoch"] == 1 and first_epoch["best_metric"] == first_epoch["metrics"]["top1"]
    mid_second = _meta(str(run / "checkpoints" / "step_00000030.ckpt"))
    assert mid_second["step_in_epoch"] == 8 and mid_second["best_metric"] == first_epoch["best_metric"]

    # Resume from the mid-epoch checkpoint: the best so far comes back with it.
    for path in glob.glob(str(run / "checkpoints" / "step_*.ckpt")):
        if int(os.path.basename(path)[5:13]) > 30:
            os.remove(path)
    cli("train", "-c", QUICKSTART, "--output-dir", str(run), "--resume", "auto", "--set", *steps)
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["best_metric"] == summary["best_metric"] == pytest.approx(
        max(first_epoch["best_metric"], resumed["metrics"]["top1"]))
    assert _meta(str(run / "checkpoints" / "best.ckpt"))["best_metric"] == resumed["best_metric"]
