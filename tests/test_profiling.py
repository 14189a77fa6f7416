"""Every run's throughput report (MFU, step split), metrics.jsonl, the peak table, the profile
window's planning and plots. MindInsight summaries and profiles: test_insight.py."""
import json
import types

import pytest

from conftest import TINY, cli
from ms_suite.config.schema import ProfileConfig
from ms_suite.errors import UserError
from ms_suite.profiling import cpu_peak, read_metrics, resolve_peak
from ms_suite.profiling.mfu import lookup_peak, training_flops_per_sample
from ms_suite.profiling.profile_window import check_window, plan_window


@pytest.mark.slow
def test_every_run_reports_mfu_and_step_split(tiny_run):
    from ms_suite.models import create_model
    from ms_suite.models.flops import count_flops

    out, proc = tiny_run
    summary = json.loads((out / "summary.json").read_text())
    for key in ("samples_per_s", "data_wait_share", "compile_s", "mfu", "peak_tflops", "model_flops_per_sample"):
        assert summary[key] is not None, key
    net = create_model("resnet18_cifar", num_classes=10, in_chans=1, base_width=8)
    assert summary["model_flops_per_sample"] == 3 * count_flops(net, (1, 8, 8))
    achieved = summary["model_flops_per_sample"] * summary["samples_per_s"] / 1e12
    assert summary["mfu"] == pytest.approx(achieved / summary["peak_tflops"], rel=1e-3)
    assert summary["peak_tflops_source"].startswith("CPU estimate")
    step_ms = summary["step_data_ms"] + summary["step_compute_ms"]
    assert summary["data_wait_share"] == pytest.approx(summary["step_data_ms"] / step_ms, abs=1e-3)
    for row in ("MFU", "step ms (data + compute)", "peak from", "compile s", "data wait share"):
        assert row in proc.stdout, row


@pytest.mark.slow
def test_metrics_jsonl_has_curves_and_evals(tiny_run):
    out, _ = tiny_run
    records = read_metrics(str(out))
    steps = [r["step"] for r in records["train"]]
    assert steps == [10, 20, 22]  # every train.log_every_steps, and the epoch's last step
    assert all(r["loss"] > 0 and r["lr"] > 0 and r["samples_per_s"] > 0 for r in records["train"])
    assert [r["step"] for r in records["eval"]] == [22] and "top1" in records["eval"][0]["eval"]


def test_profile_window_planning():
    cfg = ProfileConfig(enabled=True, start_step=10, stop_step=20)
    assert plan_window(cfg, steps_done=0, total_steps=100) == (10, 20)
    assert plan_window(cfg, steps_done=0, total_steps=15) == (10, 15)   # run ends inside the window
    assert plan_window(cfg, steps_done=12, total_steps=100) == (13, 20)  # resumed inside the window
    assert plan_window(cfg, steps_done=20, total_steps=100) is None
    with pytest.raises(UserError, match="stop_step=5 is before profile.start_step=10"):
        check_window(ProfileConfig(enabled=True, start_step=10, stop_step=5))


@pytest.mark.slow
def test_bad_profile_window_fails_before_training(tmp_path, cache_env):
    proc = cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(tmp_path / "r"), "--set", *TINY,
               "profile.enabled=true", "profile.start_step=5", "profile.stop_step=2", check=False)
    assert proc.returncode == 2 and "error: profile.stop_step=2 is before" in proc.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_cpu_peak_formula():
    cpuinfo = ("model name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz\nsiblings\t: 4\ncpu cores\t: 2\n"
               "flags\t\t: fpu sse avx avx2 fma avx512f\n")
    peak = cpu_peak(cpuinfo, cores=4)
    assert peak.tflops == pytest.approx(4 * 16 * 2 * 2 * 2.4 / 1000)
    assert "4 cores x 16 fp32 lanes (AVX-512) x 2 (FMA)" in peak.source
    arm = cpu_peak("cpu MHz\t: 2600.000\nFeatures\t: fp asimd evtstrm\n", cores=8)  # NEON, 128-bit
    assert arm.tflops == pytest.approx(8 * 4 * 2 * 2 * 2.6 / 1000)


@pytest.mark.parametrize("name, precision, tflops", [
    ("NVIDIA A100-SXM4-80GB", "fp16", 312.0), ("NVIDIA A100-PCIE-40GB", "fp32", 156.0),
    ("NVIDIA H100 80GB HBM3", "fp16", 989.5), ("NVIDIA H100 PCIe", "fp16", 756.0),
    ("Ascend910B3", "fp16", 320.0), ("Ascend910A", "fp32", 256.0), ("Ascend910ProB", "fp16", 256.0),
])
def test_peak_table(name, precision, tflops):
    assert lookup_peak(name, precision).tflops == tflops


def test_peak_override_and_unknown_device():
    assert resolve_peak("GPU", 0, "O2", override=123.0).tflops == 123.0
    assert lookup_peak("Tesla V100-SXM2-16GB", "fp16") is None


def test_task_can_count_its_own_flops():
    class CountingTask:
        def flops_per_sample(self, cfg, info):
            return 6 * 110_000_000 * info.seq_len

    trainer = types.SimpleNamespace(task=CountingTask(), cfg=None, info=types.SimpleNamespace(seq_len=128))
    assert training_flops_per_sample(trainer) == 6 * 110_000_000 * 128


@pytest.mark.slow
def test_plot_runs(tiny_run, tmp_path):
    import matplotlib.image

    target = tmp_path / "curves.png"
    proc = cli("plot", str(tiny_run[0]), str(tiny_run[0]), "--output", str(target))
    assert f"wrote {target}" in proc.stdout
    height, width, _ = matplotlib.image.imread(str(target)).shape
    assert width > 2 * height  # three panels side by side
    missing = cli("plot", str(tmp_path), "--output", str(tmp_path / "x.png"), check=False)
    assert missing.returncode == 2 and "no metrics.jsonl" in missing.stderr
    unknown = cli("plot", str(tiny_run[0]), "--metric", "top9", "--output", str(tmp_path / "y.png"), check=False)
    assert unknown.returncode == 2 and "--metric top9: the runs recorded loss, top1, top5" in unknown.stderr
