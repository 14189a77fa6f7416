"""Resume is exact: SIGKILL inside an accumulation window, ``--resume auto``, same final weights as an
uninterrupted run; extending a finished run; corrupt checkpoints (see also test_checkpoint_corruption)."""
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, cli

pytestmark = pytest.mark.slow  # end-to-end: trains or runs the CLI in a subprocess

# Every stateful feature at once: AdamW moments, EMA, 2-step accumulation buffers, mixup + cutmix,
# label smoothing, a dynamic loss scale, and an eval (EMA swap) at the epoch end before the kill.
# 1437 samples / 32 = 44 micro-batches = 22 optimizer steps per epoch, 2 epochs, a checkpoint every 5.
FEATURES = ["model.kwargs.base_width=8", "train.epochs=2", "train.batch_size=32", "train.optimizer=adamw",
            "train.lr=0.002", "train.weight_decay=0.05", "train.ema_decay=0.9", "train.accumulation_steps=2",
            "data.mixup=0.2", "data.cutmix=0.2", "train.label_smoothing=0.1", "train.loss_scale=dynamic",
            "checkpoint.every_n_steps=5", "checkpoint.keep_last=2"]
STEPS = 44
KILL_AT_CALL = 66  # micro-batch 2 of step 33: step 33's first micro-batch is already in the buffers
RESUME_STEP = 30  # the newest checkpoint before the kill (every 5 steps)


def _steps(run_dir):
    return [int(os.path.basename(p)[5:13]) for p in glob.glob(str(run_dir / "checkpoints" / "step_*.ckpt"))]


def _final_params(run_dir):
    import mindspore as ms

    newest = max(glob.glob(str(run_dir / "checkpoints" / "step_*.ckpt")))
    params = ms.load_checkpoint(newest)
    return {k: v.asnumpy() for k, v in params.items() if hasattr(v, "asnumpy")}


def _counted_train(out, *args, kill_at=0, check=True):
    """``ms-suite train`` through tests/step_counter.py; returns (process, train step calls or None)."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "step_counter.py"), "train", "-c",
                           "configs/quickstart.yaml", "--output-dir", str(out), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "STEP_KILL_AT": str(kill_at)})
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    calls = re.search(r"train step calls: (\d+)", proc.stdout)
    return proc, int(calls.group(1)) if calls else None


def test_sigkill_inside_an_accumulation_window_then_resume_auto_matches_uninterrupted_run(tmp_path, cache_env):
    reference = tmp_path / "reference"
    cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(reference), "--set", *FEATURES)

    killed = tmp_path / "killed"
    proc, calls = _counted_train(killed, "--set", *FEATURES, kill_at=KILL_AT_CALL, check=False)
    assert proc.returncode == -9 and calls is None  # SIGKILL: no exit handler ran
    assert max(_steps(killed)) == RESUME_STEP and not (killed / "summary.json").exists()

    proc, calls = _counted_train(killed, "--resume", "auto", "--set", *FEATURES)
    assert f"step_{RESUME_STEP:08d}.ckpt: epoch 2, step {RESUME_STEP}; {STEPS - RESUME_STEP} of {STEPS} steps to go" \
        in proc.stderr
    assert calls == 2 * (STEPS - RESUME_STEP)  # only the remaining optimizer steps, two micro-batches each
    want, got = _final_params(reference), _final_params(killed)
    assert want.keys() == got.keys() and any(k.startswith("ema.") for k in want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_more_epochs_extend_a_finished_run_with_the_longer_schedule(tmp_path, cache_env):
    from ms_suite.config import load_config
    from ms_suite.engine.optim import build_lr_schedule

    run = tmp_path / "run"
    short = ["model.kwargs.base_width=8", "train.batch_size=64", "eval.every_epochs=0", "train.log_every_steps=1"]
    cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(run), "--set", *short, "train.epochs=1")
    per_epoch = max(_steps(run))  # 22: the epoch-end checkpoint
    proc, calls = _counted_train(run, "--resume", "auto", "--set", *short, "train.epochs=3")
    assert f"epoch 2, step {per_epoch}; {2 * per_epoch} of {3 * per_epoch} steps to go" in proc.stderr
    assert calls == 2 * per_epoch and max(_steps(run)) == 3 * per_epoch
    assert json.loads((run / "summary.json").read_text())["steps"] == 3 * per_epoch
    cfg = load_config(os.path.join(ROOT, "configs/quickstart.yaml"), [*short, "train.epochs=3"])
    want = build_lr_schedule(cfg.train, per_epoch, cfg.train.lr)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r["lr"] for r in records if "lr" in r and r["step"] > per_epoch}
    assert sorted(logged) == list(range(per_epoch + 1, 3 * per_epoch + 1))
    np.testing.assert_allclose([logged[s] for s in sorted(logged)], want[per_epoch:], rtol=1e-5)
