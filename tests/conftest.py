"""Shared fixtures: a tiny digits recipe and helpers to run the CLI as a user would."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A small, fast variant of the quickstart: narrow ResNet-18, one epoch.
TINY = ["model.kwargs.base_width=8", "train.epochs=1", "train.batch_size=64", "eval.batch_size=128"]
WIDTH = ["model.kwargs.base_width=8"]
FLOAT_EPOCHS = 8  # the quickstart recipe as it is, at width 8
FLOAT_FLOOR = 93.0  # the shared float model must have learned before anything is compared with it


def cli(*args: str, check: bool = True, timeout: float = 600, env: dict = None) -> subprocess.CompletedProcess:
    """Run ``python -m ms_suite ARGS`` from the repo root and capture its output."""
    proc = subprocess.run([sys.executable, "-m", "ms_suite", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"ms-suite {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(autouse=True)
def pynative_by_default():
    """In-process tests start in PyNative mode (no compile time); the trainer and tests that
    need graph mode switch to it themselves, so one test's mode never leaks into the next."""
    import mindspore as ms

    ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.fixture(scope="session")
def cache_env(tmp_path_factory):
    """A private compile cache for the test session (shared by its subprocesses)."""
    path = tmp_path_factory.mktemp("ms_cache")
    os.environ["MS_SUITE_CACHE"] = str(path)
    return {"MS_SUITE_CACHE": str(path)}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, cache_env):
    """One short quickstart training run through the CLI, shared by the engine tests."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    proc = cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(out), "--set", *TINY)
    return out, proc


def pytest_collection_modifyitems(items):
    """A test that uses a trained run (``tiny_run``, ``float_model``) is end-to-end: it is marked ``slow``
    like those marked by hand."""
    for item in items:
        if {"tiny_run", "float_model"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def float_model(tmp_path_factory, cache_env):
    """The float model every compression test starts from: (checkpoint, its eval top-1)."""
    out = tmp_path_factory.mktemp("float") / "run"
    cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(out), "--set", *WIDTH,
        f"train.epochs={FLOAT_EPOCHS}")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["top1"] >= FLOAT_FLOOR and summary["peak_rss_mb"] > 100
    return str(out / "checkpoints" / "best.ckpt"), summary["best_metric"]
