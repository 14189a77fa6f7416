"""Bad input never ends in a traceback: one line naming the culprit and the fix, exit code 2."""
import pytest

from conftest import cli


def _error_line(proc):
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("args, fragment", [
    (["train", "-c", "configs/quickstart.yaml", "--set", "train.lrr=0.1"], "did you mean `train.lr`"),
    (["train", "-c", "configs/nope.yaml"], "config file not found: configs/nope.yaml"),
    (["train", "-c", "configs/resnet/resnet18_cifar10.yaml", "--set", "data.path=/no/such/cifar"],
     "/no/such/cifar"),
    (["train", "-c", "configs/resnet/resnet50_imagenet.yaml"], "data.path"),
    (["train", "-c", "configs/quickstart.yaml", "--set", "runtime.device=Ascend"],
     "runtime.device=Ascend but MindSpore cannot use it here"),
    (["train", "-c", "configs/quickstart.yaml", "--set", "model.name=resnet19"], "did you mean 'resnet18'"),
    (["train", "-c", "configs/quickstart.yaml", "--set", "model.kwargs={depth: 3}"], "takes no argument 'depth'"),
    (["train", "-c", "configs/quickstart.yaml", "--resume", "missing.ckpt"], "--resume missing.ckpt"),
    (["train", "-c", "configs/quickstart.yaml", "--set", "train.batch_size=4096"], "lower train.batch_size"),
    (["eval", "-c", "configs/quickstart.yaml", "--checkpoint", "missing.ckpt"], "checkpoint missing.ckpt not found"),
])
def test_user_errors_are_one_line_exit_2(args, fragment):
    assert fragment in _error_line(cli(*args, check=False))


@pytest.mark.slow
def test_debug_shows_the_traceback():
    proc = cli("--debug", "train", "-c", "configs/quickstart.yaml", "--set", "train.lrr=0.1", check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


@pytest.mark.slow
def test_eval_builds_the_checkpoint_model_and_names_what_it_ignores(tiny_run):
    out, _ = tiny_run
    proc = cli("eval", "-c", "configs/quickstart.yaml", "--checkpoint", str(out / "checkpoints" / "best.ckpt"),
               "--set", "model.kwargs.base_width=16")
    assert "model.kwargs.base_width=16 (checkpoint: 8) differ and are ignored" in proc.stderr


@pytest.mark.slow
def test_a_diverging_run_stops_with_the_fix(tmp_path, cache_env):
    """Without loss scaling the compiled step skips no update, so the trainer's loss check stops it."""
    proc = cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(tmp_path / "nan"), "--set",
               "model.kwargs.base_width=8", "train.epochs=1", "train.batch_size=64", "train.lr=1e12",
               "train.warmup_epochs=0", check=False)
    line = _error_line(proc)
    assert "loss became" in line and "lower train.lr" in line
