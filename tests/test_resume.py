"""Resume is exact: SIGKILL mid-epoch, ``--resume auto``, same final weights as an uninterrupted run."""
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, cli

pytestmark = pytest.mark.slow  # end-to-end: trains or runs the CLI in a subprocess

# 89 steps per epoch x 3 epochs, a checkpoint every 10 steps: plenty of room to kill mid-epoch.
RESUME = ["model.kwargs.base_width=8", "train.epochs=3", "train.batch_size=16", "eval.every_epochs=0",
          "checkpoint.every_n_steps=10", "checkpoint.keep_last=2"]
KILL_AFTER_STEP = 100  # epoch 2, step 11 of 89


def _steps(run_dir):
    return [int(os.path.basename(p)[5:13]) for p in glob.glob(str(run_dir / "checkpoints" / "step_*.ckpt"))]


def _final_params(run_dir):
    import mindspore as ms

    newest = max(glob.glob(str(run_dir / "checkpoints" / "step_*.ckpt")))
    params = ms.load_checkpoint(newest)
    return {k: v.asnumpy() for k, v in params.items() if hasattr(v, "asnumpy")}


def test_sigkill_then_resume_auto_matches_uninterrupted_run(tmp_path, cache_env):
    reference = tmp_path / "reference"
    cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(reference), "--set", *RESUME)

    killed = tmp_path / "killed"
    args = [sys.executable, "-m", "ms_suite", "train", "-c", "configs/quickstart.yaml", "--output-dir", str(killed),
            "--set", *RESUME]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not any(s >= KILL_AFTER_STEP for s in _steps(killed)):
        assert proc.poll() is None, "training finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert max(_steps(killed)) < 3 * 89, "the kill must land before the end of training"
    assert not (killed / "summary.json").exists()

    resumed = cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(killed), "--resume", "auto",
                  "--set", *RESUME)
    assert "resumed from" in resumed.stderr
    want, got = _final_params(reference), _final_params(killed)
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_resume_auto_skips_corrupt_newest_checkpoint(tmp_path, cache_env):
    run = tmp_path / "run"
    cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(run), "--set", *RESUME[:1],
        "train.epochs=1", "train.batch_size=64", "checkpoint.every_n_steps=5", "eval.every_epochs=0")
    newest = max(glob.glob(str(run / "checkpoints" / "step_*.ckpt")))
    with open(newest, "r+b") as fh:
        fh.truncate(os.path.getsize(newest) // 2)
    proc = cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(run), "--resume", "auto",
               "--set", *RESUME[:1], "train.epochs=2", "train.batch_size=64", "checkpoint.every_n_steps=5",
               "eval.every_epochs=0")
    assert "skipping checkpoint" in proc.stderr and "corrupt or truncated" in proc.stderr
    assert "resumed from" in proc.stderr


def test_named_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    proc = cli("eval", "-c", "configs/quickstart.yaml", "--checkpoint", str(bad), check=False)
    assert proc.returncode == 2
    assert f"checkpoint {bad} cannot be read" in proc.stderr and "Traceback" not in proc.stderr
