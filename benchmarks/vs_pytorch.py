"""ms-suite versus PyTorch on CPU: the same ResNet training steps, and what each MindSpore setting does.

Headline: ms-suite's ResNet-18 (CIFAR stem, batch 32, 32x32) and ResNet-50 (batch 16, 224x224)
train steps with the recipes' defaults against PyTorch (2 threads, NCHW and channels-last); ratio =
ms-suite samples/s / the faster PyTorch variant. Settings: for ResNet-18 the same alternation also
runs ms-suite under each CPU option MindSpore 2.7.2 offers (runtime.num_threads, dispatch_threads,
cpu_affinity, jit_level, graph_kernel: recipe keys) and a bare MindSpore step (TrainOneStepCell).
Every figure is the median over rounds of fresh processes run in turn (A B C ... A B C ...); the
options MindSpore refuses on CPU (NHWC layout, jit_level O2, dataset sink) are probed and the
refusal printed; a setting this environment lacks a package for is skipped with the reason.

    .venv/bin/python benchmarks/vs_pytorch.py [--rounds 3] [--skip-settings] [--quick]
"""
from __future__ import annotations

from typing import Dict, List, Sequence

from common import (QUICK_RESNET, LoadWatch, alternate, finish, median, parse_args, progress, run_json, target,
                    worker)

MODELS = {  # name: (recipe, batch, torch arch, CIFAR stem)
    "resnet18_cifar": ("configs/resnet/resnet18_cifar10.yaml", 32, "resnet18", True),
    "resnet50": ("configs/resnet/resnet50_synthetic.yaml", 16, "resnet50", False),
}
SETTINGS = {  # label: recipe overrides, each tried alone on ResNet-18 (against the recipe default)
    "runtime.num_threads=1": ["runtime.num_threads=1"],
    "runtime.num_threads=2": ["runtime.num_threads=2"],
    "runtime.dispatch_threads=1": ["runtime.dispatch_threads=1"],
    "runtime.cpu_affinity=true": ["runtime.cpu_affinity=true"],
    "runtime.jit_level=O0": ["runtime.jit_level=O0"],
    "runtime.jit_level=O1": ["runtime.jit_level=O1"],
    "runtime.graph_kernel=true": ["runtime.graph_kernel=true"],
}
TORCH_THREADS = 2


def add_arguments(parser) -> None:
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per comparison")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per process (ResNet-50: a third)")
    parser.add_argument("--skip-settings", action="store_true", help="only the headline comparison")
    parser.add_argument("--settings", nargs="*", choices=list(SETTINGS), help="settings to try (default: all)")


def ms_command(model: str, overrides: Sequence[str], steps: int, batch: int, quick: bool,
               bare: bool = False) -> List[str]:
    recipe, _, _, _ = MODELS[model]
    extra = ["--input-shape", "3", "64", "64"] if quick and model == "resnet50" else []
    return worker("ms_steps.py", "-c", recipe, "--batch", str(batch), "--steps", str(steps), "--warmup", "1",
                  *extra, *(["--bare"] if bare else []), "--set", *overrides, *(QUICK_RESNET if quick else []))


def torch_command(model: str, channels_last: bool, steps: int, batch: int, quick: bool) -> List[str]:
    from ms_suite.config import load_config

    recipe, _, arch, cifar = MODELS[model]
    train = load_config(recipe).train
    size = 32 if cifar else (64 if quick else 224)
    return worker("torch_steps.py", "--arch", arch, *(["--cifar-stem"] if cifar else []),
                  "--num-classes", "10" if cifar else "1000", "--image-size", str(size), "--batch", str(batch),
                  "--threads", str(TORCH_THREADS), "--steps", str(steps), "--warmup", "1",
                  "--lr", str(train.lr), "--momentum", str(train.momentum), "--weight-decay", str(train.weight_decay),
                  "--label-smoothing", str(train.label_smoothing), *(["--nesterov"] if train.nesterov else []),
                  *(["--channels-last"] if channels_last else []))


def rate(cmd: List[str]) -> float:
    return run_json(cmd)["samples_per_s"]


def probe_refusals() -> Dict[str, str]:
    """What MindSpore says when asked for the CPU options it does not have (first line of each)."""
    import mindspore as ms
    import mindspore.dataset as ds
    from mindspore import nn

    from ms_suite.config.schema import RuntimeConfig
    from ms_suite.errors import UserError
    from ms_suite.runtime.device import apply_performance_settings

    ms.set_device("CPU")
    probes = {
        "NHWC Conv2d (data_format)": lambda: nn.Conv2d(3, 8, 3, data_format="NHWC"),
        "NHWC BatchNorm2d (data_format)": lambda: nn.BatchNorm2d(8, data_format="NHWC"),
        "dataset sink (mindspore.data_sink)": lambda: ms.data_sink(
            lambda x: x, ds.NumpySlicesDataset({"x": [[1.0]]}, shuffle=False)),
        "runtime.jit_level=O2": lambda: apply_performance_settings(RuntimeConfig(jit_level="O2"), "CPU"),
    }
    refusals = {}
    for name, probe in probes.items():
        try:
            probe()
            refusals[name] = "accepted"
        except (ValueError, RuntimeError, TypeError, UserError) as err:
            refusals[name] = str(err).strip().splitlines()[0]
    refusals["dataset sink (Model.train)"] = ("mindspore/train/model.py falls back to non-sink on CPU: "
                                              "\"The CPU cannot support dataset sink mode currently\"")
    return refusals


DEFAULT, TORCH, TORCH_CL, BARE = ("ms-suite (recipe default)", "PyTorch NCHW", "PyTorch channels-last",
                                 "bare MindSpore (TrainOneStepCell)")


def unavailable(settings: Sequence[str]) -> Dict[str, str]:
    """The settings this environment cannot run, with the reason: they are skipped and reported."""
    from ms_suite.runtime.device import graph_kernel_missing

    missing = graph_kernel_missing("CPU")
    return {label: missing for label in settings if missing and "runtime.graph_kernel=true" in SETTINGS[label]}


def compare(model: str, settings: Sequence[str], args, load: LoadWatch) -> Dict[str, float]:
    """Median samples/s of each contender on ``model``, fresh processes alternating A B C A B C."""
    _, batch, _, _ = MODELS[model]
    steps = 2 if args.quick else (args.steps if model == "resnet18_cifar" else max(args.steps // 3, 3))
    batch = 2 if args.quick else batch
    runs = {DEFAULT: lambda: rate(ms_command(model, [], steps, batch, args.quick)),
            TORCH: lambda: rate(torch_command(model, False, steps, batch, args.quick)),
            TORCH_CL: lambda: rate(torch_command(model, True, steps, batch, args.quick))}
    for label in settings:
        runs[label] = lambda o=SETTINGS[label]: rate(ms_command(model, o, steps, batch, args.quick))
    if settings:
        runs[BARE] = lambda: rate(ms_command(model, [], steps, batch, args.quick, bare=True))
    found = alternate(runs, 1 if args.quick else args.rounds, load)
    return {label: round(median(values), 3) for label, values in found.items()}


def main() -> None:
    args = parse_args(__doc__, add_arguments)
    load = LoadWatch(args.wait_quiet)
    progress("probing the CPU options MindSpore refuses ...")
    refusals = probe_refusals()
    settings = [] if args.skip_settings or args.quick else (args.settings or list(SETTINGS))
    skipped = unavailable(settings)
    settings = [label for label in settings if label not in skipped]
    models, sweep = {}, {}
    for model, (_, batch, _, _) in MODELS.items():
        if args.quick and model != "resnet18_cifar":
            continue
        rates = compare(model, settings if model == "resnet18_cifar" else [], args, load)
        best_torch = max(rates[TORCH], rates[TORCH_CL])
        models[model] = {"batch": 2 if args.quick else batch, "ms_suite_samples_per_s": rates[DEFAULT],
                         "torch_samples_per_s": rates[TORCH], "torch_channels_last_samples_per_s": rates[TORCH_CL],
                         "ratio": round(rates[DEFAULT] / best_torch, 4)}
        if model == "resnet18_cifar":
            sweep = {label: {"samples_per_s": value, "vs_default": round(value / rates[DEFAULT], 4),
                             "vs_pytorch": round(value / best_torch, 4)} for label, value in rates.items()}
    rows = [[f"{m} (batch {r['batch']})", r["ms_suite_samples_per_s"], r["torch_samples_per_s"],
             r["torch_channels_last_samples_per_s"], f"{r['ratio']:.3f}"] for m, r in models.items()]
    notes = [f"PyTorch {TORCH_THREADS} threads; ratio = ms-suite / the faster PyTorch variant; "
             "each figure the median of fresh processes run alternately"]
    if settings:
        notes += ["", "ResNet-18 CIFAR step per MindSpore CPU setting (each alone, in a fresh process):",
                  *(f"  {label:36s} {r['samples_per_s']:9.2f} samples/s  x{r['vs_default']:.3f} of default  "
                    f"x{r['vs_pytorch']:.3f} of PyTorch" for label, r in sweep.items())]
    notes += [f"  {label:36s} skipped: {why}" for label, why in skipped.items()]
    notes += ["", "Refused on CPU:", *(f"  {name}: {why}" for name, why in refusals.items())]
    worst = min(r["ratio"] for r in models.values())
    finish("ms-suite vs PyTorch: training samples/s on CPU",
           ["model", "ms-suite", "PyTorch NCHW", "PyTorch channels-last", "ratio"], rows,
           {"benchmark": "vs_pytorch", "quick": args.quick, "models": models, "settings": sweep,
            "skipped_settings": skipped, "refused_on_cpu": refusals, **target(worst, 1.0)}, load, notes)


if __name__ == "__main__":
    main()
