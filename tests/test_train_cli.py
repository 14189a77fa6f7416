"""End to end through the CLI: train writes the run directory; eval and export use its checkpoint."""
import json
import os

import pytest
import yaml

from conftest import TINY, cli

pytestmark = pytest.mark.slow  # end-to-end: trains or runs the CLI in a subprocess

SUMMARY_KEYS = {"model", "dataset", "device", "world_size", "epochs", "steps", "global_batch_size", "metrics",
                "best_metric", "samples_per_s", "compile_s", "time_to_first_step_s", "wall_s",
                "mindspore_version", "final_checkpoint"}


def test_train_writes_run_directory(tiny_run):
    out, output = tiny_run
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["model"] == "resnet18_cifar" and summary["device"] == "CPU" and summary["world_size"] == 1
    assert summary["steps"] == 1437 // 64 and summary["global_batch_size"] == 64
    assert 0 <= summary["metrics"]["top1"] <= 100 and summary["samples_per_s"] > 0
    assert os.path.isfile(summary["final_checkpoint"]) and (out / "checkpoints" / "best.ckpt").is_file()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["kwargs"] == {"base_width": 8} and saved["base"] == []
    log = (out / "train.log").read_text()
    assert "samples/s" in log and "eta" in log and "epoch 1 eval" in log
    assert "run directory:" in output["stdout"] and "samples/s (train)" in output["stdout"]


def test_eval_reproduces_final_metrics(tiny_run):
    out, _ = tiny_run
    summary = json.loads((out / "summary.json").read_text())
    proc = cli("eval", "-c", "configs/quickstart.yaml", "--checkpoint", summary["final_checkpoint"], "--set", *TINY)
    top1 = float(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("top1")))
    assert abs(top1 - summary["metrics"]["top1"]) < 1e-3


def test_export_mindir_runs(tiny_run, tmp_path):
    import mindspore as ms
    import numpy as np

    out, _ = tiny_run
    ckpt = out / "checkpoints" / "best.ckpt"
    target = tmp_path / "digits.mindir"
    cli("export", "-c", "configs/quickstart.yaml", "--checkpoint", str(ckpt), "--output", str(target),
        "--set", *TINY)
    graph = ms.nn.GraphCell(ms.load(str(target)))
    logits = graph(ms.Tensor(np.zeros((1, 1, 8, 8), np.float32)))
    assert logits.shape == (1, 10)


def test_pretrained_with_other_num_classes_drops_classifier(tiny_run, tmp_path):
    out, _ = tiny_run
    proc = cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(tmp_path / "ft"), "--set", *TINY,
               f"model.pretrained={out / 'checkpoints' / 'best.ckpt'}", "model.num_classes=12")
    assert "classifier fc.* of model 'resnet18_cifar' not loaded" in proc.stderr
