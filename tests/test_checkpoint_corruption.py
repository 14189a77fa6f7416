"""Damaged checkpoints (same-size bit flip, truncation, empty file): ``--resume auto`` warns once and
falls back to the newest readable one (or starts fresh when none is left); a damaged checkpoint named
through ``train --resume``, ``eval`` or ``export`` exits 2 with exactly one line on stderr."""
import logging
import os
import shutil

import mindspore as ms
import pytest
from mindspore import nn

from conftest import cli
from ms_suite.checkpoint import atomic_save, latest_valid
from ms_suite.errors import UserError
from ms_suite.checkpoint import read_checkpoint

KINDS = ["bit_flip", "truncated", "empty"]


def damage(path, kind: str) -> None:
    """Flip one bit in the middle (size unchanged), cut the file in half, or empty it."""
    data = bytearray(open(path, "rb").read())
    if kind == "bit_flip":
        data[len(data) // 2] ^= 0x10
    elif kind == "truncated":
        data = data[: len(data) // 2]
    else:
        data = bytearray()
    with open(path, "wb") as fh:
        fh.write(bytes(data))


@pytest.fixture
def warnings():
    """WARNING records of the ms_suite logger (which stops propagating once the CLI set it up)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("ms_suite")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _save_steps(folder, steps):
    ms.set_seed(0)
    net = nn.Dense(16, 8)
    for step in steps:
        atomic_save(net, str(folder / f"step_{step:08d}.ckpt"), {"step": step})


@pytest.mark.parametrize("kind", KINDS)
def test_read_is_one_line_naming_the_file_without_mindspore_log_lines(tmp_path, kind, capfd):
    _save_steps(tmp_path, [1])
    path = str(tmp_path / "step_00000001.ckpt")
    size = os.path.getsize(path)
    damage(path, kind)
    assert os.path.getsize(path) == {"bit_flip": size, "truncated": size // 2, "empty": 0}[kind]
    with pytest.raises(UserError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert "\n" not in message and f"checkpoint {path} cannot be read" in message
    assert ("empty" if kind == "empty" else "corrupt or truncated") in message
    assert "permission" not in message.lower()
    out, errors = capfd.readouterr()
    assert "ME(" not in out + errors and "permission" not in (out + errors).lower()


@pytest.mark.parametrize("kind", KINDS)
def test_auto_warns_once_and_takes_the_newest_readable_checkpoint(tmp_path, kind, warnings):
    _save_steps(tmp_path, [5, 10, 15])
    damage(str(tmp_path / "step_00000015.ckpt"), kind)
    path, _, meta = latest_valid(str(tmp_path))
    assert path.endswith("step_00000010.ckpt") and meta["step"] == 10
    (line,) = [r.getMessage() for r in warnings]
    assert "step_00000015.ckpt" in line and "using step_00000010.ckpt" in line


def test_auto_with_every_checkpoint_damaged_names_them_in_one_warning(tmp_path, warnings):
    _save_steps(tmp_path, [5, 10, 15])
    for step, kind in zip((5, 10, 15), KINDS):
        damage(str(tmp_path / f"step_{step:08d}.ckpt"), kind)
    assert latest_valid(str(tmp_path)) is None
    (line,) = [r.getMessage() for r in warnings]
    assert all(f"step_{s:08d}.ckpt" in line for s in (5, 10, 15)) and "starting fresh" in line


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_named_damaged_checkpoint_is_exit_2_and_one_stderr_line(tiny_run, tmp_path, kind):
    bad = tmp_path / "bad.ckpt"
    shutil.copyfile(tiny_run[0] / "checkpoints" / "best.ckpt", bad)
    damage(str(bad), kind)
    commands = {
        "train": ["train", "-c", "configs/quickstart.yaml", "--resume", str(bad), "--output-dir", str(tmp_path / "r")],
        "eval": ["eval", "-c", "configs/quickstart.yaml", "--checkpoint", str(bad)],
        "export": ["export", "-c", "configs/quickstart.yaml", "--checkpoint", str(bad),
                   "--output", str(tmp_path / "x.mindir")],
    }
    for name, args in commands.items():
        proc = cli(*args, "--set", "model.kwargs.base_width=8", check=False)
        lines = proc.stderr.splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (name, proc.stderr[-2000:])
        assert lines[0].startswith(f"error: checkpoint {bad} cannot be read"), (name, lines)
        assert "permission" not in lines[0].lower()


@pytest.mark.slow
def test_resume_auto_skips_damaged_checkpoints_and_starts_fresh_when_none_is_readable(tmp_path, cache_env):
    run = tmp_path / "run"
    recipe = ["model.kwargs.base_width=8", "train.epochs=1", "train.batch_size=64", "checkpoint.every_n_steps=5",
              "eval.every_epochs=0"]  # 22 steps: checkpoints 15, 20 and 22 are kept
    cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(run), "--set", *recipe)
    folder = run / "checkpoints"
    damage(str(folder / "step_00000022.ckpt"), "bit_flip")
    proc = cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(run), "--resume", "auto", "--set", *recipe)
    assert "skipping unreadable checkpoint(s) step_00000022.ckpt" in proc.stderr
    assert "resumed from" in proc.stderr and "step_00000020.ckpt: epoch 1, step 20; 2 of 22 steps to go" in proc.stderr

    for step, kind in zip((15, 20, 22), KINDS):
        damage(str(folder / f"step_{step:08d}.ckpt"), kind)
    proc = cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(run), "--resume", "auto", "--set", *recipe)
    warned = [line for line in proc.stderr.splitlines() if "unreadable" in line]
    assert len(warned) == 1 and "starting fresh" in warned[0]
    assert all(f"step_{s:08d}.ckpt" in warned[0] for s in (15, 20, 22)) and "resumed from" not in proc.stderr
