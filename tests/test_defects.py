"""Regression tests for the first-hour defects of issue 16 (best metric on resume, seeded dropout,
Ctrl-C, untouched run directories on failure, one-line errors, WordPiece vocab, compile cache)."""
import glob
import json
import os

import pytest

from conftest import ROOT, TINY, cli

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


def _bert_cls_config(tmp_path, *overrides):
    from bert_fixtures import write_classification, write_vocab
    from ms_suite.config import load_config

    data = write_classification(str(tmp_path / "sentiment"), "csv", train=64, eval_=16)
    vocab = write_vocab(str(tmp_path / "vocab.txt"))
    return load_config(os.path.join(ROOT, "configs/bert/bert_tiny_finetune_cls.yaml"),
                       [f"data.path={data}", f"data.vocab={vocab}", "data.seq_len=16", "data.num_workers=1",
                        "train.epochs=2", "checkpoint.every_n_steps=2", "checkpoint.keep_last=10", *overrides])


def _weights(path):
    import mindspore as ms

    return {k: v.asnumpy() for k, v in ms.load_checkpoint(path).items() if hasattr(v, "asnumpy")}


@pytest.mark.slow
def test_bert_dropout_is_seeded_and_resume_is_exact(tmp_path, cache_env):
    """Two identical fine-tuning runs (dropout 0.1) end with identical weights, a different
    train.seed does not, and a run resumed mid-epoch from a step checkpoint ends where the
    uninterrupted run does (the masks follow the training position, not a kernel's state)."""
    import shutil

    import numpy as np

    from ms_suite.engine.trainer import Trainer

    final = "checkpoints/step_00000008.ckpt"  # 64 samples / batch 16 = 4 steps x 2 epochs
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("other_seed", 8)):
        Trainer(_bert_cls_config(tmp_path, f"train.seed={seed}"), str(tmp_path / name), progress=False).fit()
        runs[name] = _weights(str(tmp_path / name / final))
    dropout = _bert_cls_config(tmp_path).model.kwargs.get("hidden_dropout_prob", 0.1)
    assert dropout > 0
    for key in runs["a"]:
        np.testing.assert_array_equal(runs["b"][key], runs["a"][key], err_msg=key)
    classifier = "step.optimizer.classifier.weight" if "step.optimizer.classifier.weight" in runs["a"] else \
        next(k for k in runs["a"] if k.endswith("classifier.weight"))
    assert not np.array_equal(runs["other_seed"][classifier], runs["a"][classifier])

    shutil.copytree(tmp_path / "a", tmp_path / "resumed")
    for path in glob.glob(str(tmp_path / "resumed" / "checkpoints" / "step_*.ckpt")):
        if int(os.path.basename(path)[5:13]) > 6:  # keep step 6: epoch 2, 2 of its 4 steps done
            os.remove(path)
    Trainer(_bert_cls_config(tmp_path, "train.seed=7"), str(tmp_path / "resumed"), resume="auto",
            progress=False).fit()
    resumed = _weights(str(tmp_path / "resumed" / final))
    for key in runs["a"]:
        np.testing.assert_allclose(resumed[key], runs["a"][key], rtol=1e-5, atol=1e-6, err_msg=key)


BERT_CLS = "configs/bert/bert_tiny_finetune_cls.yaml"


def _snapshot(folder):
    return {os.path.relpath(p, folder): open(p, "rb").read()
            for p in glob.glob(os.path.join(folder, "**"), recursive=True) if os.path.isfile(p)}


@pytest.mark.slow
def test_a_failed_command_leaves_run_directories_alone(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("data:\n  path: data/good\n")
    (run / "train.log").write_text("the first run's log\n")
    before = _snapshot(str(run))
    proc = cli("train", "-c", BERT_CLS, "--output-dir", str(run), "--resume", "auto",
               "--set", f"data.path={tmp_path / 'nope'}", check=False)
    assert proc.returncode == 2 and "error:" in proc.stderr
    assert _snapshot(str(run)) == before

    fresh = tmp_path / "fresh"
    proc = cli("train", "-c", BERT_CLS, "--output-dir", str(fresh), "--set", f"data.path={tmp_path / 'nope'}",
               check=False)
    assert proc.returncode == 2 and not fresh.exists()


@pytest.mark.slow
def test_device_line_once_and_a_failed_runs_error_in_its_log(tmp_path, cache_env):
    run = tmp_path / "nan"
    proc = cli("train", "-c", QUICKSTART, "--output-dir", str(run), "--set", *TINY, "train.lr=1e12",
               "train.warmup_epochs=0", check=False)
    assert proc.returncode == 2
    error = next(line for line in proc.stderr.splitlines() if line.startswith("error:"))
    log = (run / "train.log").read_text()
    assert f"run failed: {error[len('error: '):]}" in log
    assert proc.stderr.count("device CPU") == 1 and log.count("device CPU") == 1
    assert (run / "config.yaml").is_file()
