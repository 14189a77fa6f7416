"""Every benchmark script runs end to end with --quick and ends with its one-line JSON report.

No timings are checked (the quick figures are meaningless); the figures must only be there.
"""
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # end-to-end: trains or runs the CLI in a subprocess

COMMON = {"benchmark", "quick", "others_cores_max", "quiet", "machine"}
TARGET = {"target", "met"}
EXPECTED = {
    "async_save": {"ratio", "step_ms_none", "step_ms_sync", "step_ms_async", "save_call_ms_sync",
                   "save_call_ms_async", "checkpoint_mb"} | TARGET,
    "overhead": {"ratio", "suite_samples_per_s", "bare_samples_per_s", "runs"} | TARGET,
    "throughput": {"rows", "peak_tflops", "peak_source"},
    "vs_pytorch": {"ratio", "models", "settings", "refused_on_cpu"} | TARGET,
    "data_pipeline": {"ratio", "pipelines", "data_wait_share"} | TARGET,
    "dp_scaling": {"efficiency", "one_worker_samples_per_s", "two_workers_samples_per_s"} | TARGET,
    "eval_scaling": {"speedup", "one_worker_eval_s", "two_workers_eval_s", "eval_samples"},
    "stem_pool": {"speedup", "ms", "exact_every_call"},
    "startup": {"suite_share_s", "cold_s", "warm_s", "warm_over_cold", "runs", "models"} | TARGET,
}
MINDCV_PYTHON = os.environ.get("MS_SUITE_MINDCV_PYTHON", "")


def run_quick(name: str) -> dict:
    """``benchmarks/<name>.py --quick``; its closing JSON line."""
    env = {**os.environ, "PATH": f"{os.path.join(ROOT, '.venv', 'bin')}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", f"{name}.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    return json.loads(last)


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_quick_run_reports_json(name, cache_env):
    report = run_quick(name)
    assert COMMON | EXPECTED[name] <= set(report), sorted(COMMON | EXPECTED[name] - set(report))
    assert report["benchmark"] == name and report["quick"] is True
    assert report["machine"]["cores"] >= 1 and report["machine"]["mindspore"]
    headline = report.get("ratio", report.get("efficiency", report.get("suite_share_s")))
    if headline is not None:
        assert positive(headline) and report["met"] in (True, False)
    if name == "throughput":
        assert all(positive(row["samples_per_s"]) and positive(row["flops_per_sample"]) for row in report["rows"])
        assert {row["mode"] for row in report["rows"]} == {"train", "infer"}
    if name == "vs_pytorch":
        assert all(positive(m["torch_samples_per_s"]) for m in report["models"].values())
        assert report["refused_on_cpu"]["runtime.jit_level=O2"].startswith("runtime.jit_level=O2")
    if name == "data_pipeline":
        assert set(report["pipelines"]) == {"CIFAR-10 binary", "JPEG ImageFolder"}
        assert 0 <= report["ratio"] < 1
    if name == "startup":
        assert set(report["models"]) == {"quickstart", "resnet50"}


@pytest.mark.skipif(not os.path.isfile(MINDCV_PYTHON), reason="no MindCV environment (MS_SUITE_MINDCV_PYTHON)")
def test_vs_mindcv_quick_run_reports_json(cache_env):
    """Only where a MindCV 0.3.0 virtualenv is given (docs/guides/benchmarks.md); CI has none."""
    report = run_quick("vs_mindcv")
    assert COMMON | {"ratio", "models"} | TARGET <= set(report)
    assert positive(report["models"]["resnet18"]["mindcv_samples_per_s"]) and positive(report["ratio"])
