"""Every run's throughput report (MFU, step split), metrics.jsonl, the peak table, the profile
window's planning and plots. MindInsight summaries and profiles: test_insight.py."""
import json
import types

import pytest

from conftest import TINY, cli
from ms_suite.config.schema import ProfileConfig
from ms_suite.errors import UserError
from ms_suite.engine.callbacks import cpu_peak, read_metrics, resolve_peak
from ms_suite.engine.callbacks.mfu import lookup_peak
from ms_suite.engine.callbacks.profile_window import check_window, plan_window


@pytest.mark.slow
def test_every_run_reports_mfu_and_step_split(tiny_run):
    from ms_suite.models import create_model
    from ms_suite.models.flops import count_flops

    out, output = tiny_run
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
        assert row in output["stdout"], row


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


def _cpuinfo(vendor, family, model, name, flags, mhz="2600.000"):
    return (f"vendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\nmodel name\t: {name}\n"
            f"cpu MHz\t\t: {mhz}\nsiblings\t: 4\ncpu cores\t: 2\nflags\t\t: fpu sse sse2 {flags}\n")


AVX512 = "avx fma avx2 avx512f avx512dq avx512bw avx512vl"


@pytest.mark.parametrize("cpuinfo, flops_per_cycle, ghz, fragment", [
    # AMD EPYC 9654 (Zen 4, family 0x19): AVX-512 runs on two 256-bit FMA pipes
    (_cpuinfo("AuthenticAMD", 25, 17, "AMD EPYC 9654 96-Core Processor", AVX512, "2400.000"), 32, 2.4, "Zen 4"),
    # AMD EPYC 9755 (Zen 5, family 0x1A): two full 512-bit pipes
    (_cpuinfo("AuthenticAMD", 26, 2, "AMD EPYC 9755 128-Core Processor", AVX512, "2700.000"), 64, 2.7, "Zen 5"),
    # AMD EPYC 7B13 (Zen 3): AVX2, two 256-bit FMA pipes; EPYC 7601 (Zen 1): two 128-bit pipes
    (_cpuinfo("AuthenticAMD", 25, 1, "AMD EPYC 7B13", "avx fma avx2"), 32, 2.6, "AVX2, 2 x 256-bit FMA"),
    (_cpuinfo("AuthenticAMD", 23, 1, "AMD EPYC 7601 32-Core Processor", "avx fma avx2"), 16, 2.6, "Zen/Zen+"),
    # Intel: Gold 6148 two 512-bit FMA units at its nominal 2.40 GHz, Silver 4114 one; a VM's anonymous Xeon
    (_cpuinfo("GenuineIntel", 6, 85, "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", AVX512), 64, 2.4, "2 x 512"),
    (_cpuinfo("GenuineIntel", 6, 85, "Intel(R) Xeon(R) Silver 4114 CPU @ 2.20GHz", AVX512), 32, 2.2, "(Silver)"),
    (_cpuinfo("GenuineIntel", 6, 143, "Intel(R) Xeon(R) Processor", AVX512, "2599.998"), 64, 2.6, "2 x 512"),
    # Sandy Bridge: AVX without FMA (one add and one multiply pipe)
    (_cpuinfo("GenuineIntel", 6, 45, "Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", "avx"), 16, 2.6, "add/mul"),
])
def test_cpu_peak_follows_the_cpu_present(cpuinfo, flops_per_cycle, ghz, fragment):
    peak = cpu_peak(cpuinfo, cores=4)
    assert peak.tflops == pytest.approx(4 * flops_per_cycle * ghz / 1000, rel=1e-4)
    assert fragment in peak.source and f"{flops_per_cycle} fp32 FLOPs/cycle" in peak.source


def test_cpu_peak_on_arm_and_of_this_machine():
    arm = cpu_peak("cpu MHz\t: 2600.000\nFeatures\t: fp asimd evtstrm\n", cores=8)  # NEON, 2 x 128-bit FMA
    assert arm.tflops == pytest.approx(8 * 16 * 2.6 / 1000)
    here = cpu_peak()
    assert here.tflops > 0 and "FLOPs/cycle" in here.source


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
    from ms_suite.engine.callbacks import MfuReport
    from ms_suite.engine.tasks import get_task

    class CountingTask(type(get_task("image-classification"))):
        def flops_per_sample(self, net, cfg, data_info):
            return 6 * 110_000_000 * data_info.seq_len

    context = types.SimpleNamespace(task=CountingTask(), net=None, cfg=None,
                                    data_info=types.SimpleNamespace(seq_len=128))
    assert MfuReport._flops(context) == 6 * 110_000_000 * 128


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
