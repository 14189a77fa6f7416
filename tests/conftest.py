"""Shared fixtures: a tiny digits recipe and helpers to run the CLI as a user would."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from filelock import FileLock

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


def shared_folder(tmp_path_factory, name: str, make) -> tuple:
    """``(folder, result)`` where ``make(folder)`` ran once for the whole test session, even across
    pytest-xdist workers (they share the parent of their base temp folders); ``result`` is what
    ``make`` returned, saved as JSON, so every worker sees the same value."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder, result_file = root / "shared" / name, root / "shared" / f"{name}.json"
    result_file.parent.mkdir(exist_ok=True)
    with FileLock(str(result_file) + ".lock"):
        if not result_file.exists():
            shutil.rmtree(folder, ignore_errors=True)
            result_file.write_text(json.dumps(make(folder)))
    return folder, json.loads(result_file.read_text())


def cli_output(proc: subprocess.CompletedProcess) -> dict:
    return {"stdout": proc.stdout, "stderr": proc.stderr}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, cache_env):
    """One short quickstart training run through the CLI, shared by the engine tests:
    (run folder, {"stdout", "stderr"})."""
    return shared_folder(tmp_path_factory, "tiny", lambda out: cli_output(
        cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(out), "--set", *TINY)))


def pytest_collection_modifyitems(items):
    """A test that uses a trained run (``tiny_run``, ``float_model`` or a compression run built on it) is
    end-to-end: it is marked ``slow`` like those marked by hand."""
    for item in items:
        if {"tiny_run", "float_model", "simqat_run", "slb_run"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def float_model(tmp_path_factory, cache_env):
    """The float model every compression test starts from: (checkpoint, its eval top-1)."""
    def train(out):
        cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(out), "--set", *WIDTH,
            f"train.epochs={FLOAT_EPOCHS}")
        return json.loads((out / "summary.json").read_text())

    out, summary = shared_folder(tmp_path_factory, "float", train)
    assert summary["metrics"]["top1"] >= FLOAT_FLOOR and summary["peak_rss_mb"] > 100
    return str(out / "checkpoints" / "best.ckpt"), summary["best_metric"]


def compress_run(tmp_path_factory, float_model, algorithm: str, *overrides: str) -> tuple:
    """``ms-suite compress`` of the shared float model with ``TINY`` + ``overrides``, once per session:
    (run folder, its compression report, the command's output)."""
    def run(out):
        proc = cli("compress", "-c", f"configs/compress/resnet18_digits_{algorithm}.yaml", "--pretrained",
                   float_model[0], "--output-dir", str(out), "--set", *TINY, *overrides)
        return {**cli_output(proc), "report": json.loads((out / "compression_report.json").read_text())}

    out, result = shared_folder(tmp_path_factory, algorithm, run)
    report = result.pop("report")
    check_compression_report(report)
    return out, report, result


def check_compression_report(report: dict) -> None:
    """What every compression run writes: the float and compressed exports, and its peak memory."""
    assert os.path.isfile(report["before"]["file"]) and os.path.isfile(report["after"]["file"])
    assert report["peak_rss_mb"] > 100


@pytest.fixture(scope="session")
def simqat_run(tmp_path_factory, float_model):
    """SimQAT from the shared float model, one fine-tuning epoch."""
    return compress_run(tmp_path_factory, float_model, "simqat")


# SLB: soft weights for epochs 1-2 (temperature rising in 2), one-hot in 3 so BatchNorm adapts to them.
SLB_SCHEDULE = ["train.epochs=3", "compression.slb.t_start_time=0.5", "compression.slb.t_end_time=1.0"]


@pytest.fixture(scope="session")
def slb_run(tmp_path_factory, float_model):
    """2-bit SLB from the shared float model."""
    return compress_run(tmp_path_factory, float_model, "slb", "compression.slb.weight_bits=2", *SLB_SCHEDULE)
