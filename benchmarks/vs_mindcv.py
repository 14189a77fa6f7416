"""ms-suite versus MindCV 0.3.0 on the same MindSpore: ResNet-18 and ResNet-50 train steps on CPU.

Both contenders run their own compiled train step on one fixed batch (the same .npz file), with
the same settings taken from ms-suite's ImageNet recipes: momentum SGD 0.9, weight decay 1e-4
without decay on BatchNorm and biases, a per-step learning rate, label smoothing 0.1, fp32 and
no loss scaling. ms-suite: ``ms_steps.py`` (the Trainer's ``TrainStep``); MindCV:
``mindcv_steps.py`` (``create_model`` + ``create_loss`` + ``create_optimizer`` +
``create_trainer``, then the ``mindspore.Model``'s train network) run by the Python of a separate
MindCV virtualenv, so MindCV's requirements never enter the suite's environment:

    python3.11 -m venv /work/venv-mindcv
    /work/venv-mindcv/bin/pip install mindspore==2.7.2 mindcv==0.3.0 "numpy<2"
    MS_SUITE_MINDCV_PYTHON=/work/venv-mindcv/bin/python .venv/bin/python benchmarks/vs_mindcv.py

Every figure is the median over rounds of fresh processes run in turn (ms-suite, MindCV, ...);
ratio = ms-suite samples/s / MindCV samples/s.
"""
from __future__ import annotations

import os
import tempfile
from typing import Dict, List

import numpy as np

from common import (BENCH_DIR, QUICK_RESNET, LoadWatch, alternate, finish, median, parse_args, progress, run_json,
                    target, worker)

MODELS = {"resnet18": "configs/resnet/resnet18_imagenet.yaml",  # MindCV name: ms-suite recipe
          "resnet50": "configs/resnet/resnet50_imagenet.yaml"}
TARGET = 1.05
ENV_VAR = "MS_SUITE_MINDCV_PYTHON"
SUITE, MINDCV = "ms-suite", "MindCV 0.3.0"


def add_arguments(parser) -> None:
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per model")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per process (ResNet-50: half)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224, help="square input size")
    parser.add_argument("--models", nargs="*", choices=list(MODELS), help="default: both")
    parser.add_argument("--mindcv-python", default=os.environ.get(ENV_VAR),
                        help=f"Python of the MindCV virtualenv (default: ${ENV_VAR})")


def mindcv_python(path: str) -> str:
    if not path or not os.path.isfile(path):
        raise SystemExit(f"vs_mindcv.py needs the Python of a MindCV 0.3.0 virtualenv: set {ENV_VAR} or "
                         "--mindcv-python (create it: python3.11 -m venv /work/venv-mindcv && /work/venv-mindcv/"
                         "bin/pip install mindspore==2.7.2 mindcv==0.3.0 'numpy<2')")
    return path


def write_batch(path: str, batch: int, size: int, num_classes: int = 1000) -> str:
    """The one batch both contenders train on: uniform [0, 1) images and random labels, seed 0."""
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.random((batch, 3, size, size), dtype=np.float32),
             labels=rng.integers(0, num_classes, batch).astype(np.int32))
    return path


def train_settings(recipe: str, batch: int) -> Dict[str, float]:
    """The recipe's optimizer and loss settings, with its lr scaled to ``batch`` as the Trainer does."""
    from ms_suite.config import load_config

    train = load_config(recipe).train
    lr = train.lr * batch / train.base_batch_size if train.scale_lr else train.lr
    return {"lr": lr, "momentum": train.momentum, "weight_decay": train.weight_decay,
            "label_smoothing": train.label_smoothing}


def suite_command(model: str, inputs: str, batch: int, size: int, steps: int, quick: bool) -> List[str]:
    return worker("ms_steps.py", "-c", MODELS[model], "--batch", str(batch), "--input-shape", "3", str(size),
                  str(size), "--inputs", inputs, "--steps", str(steps), "--warmup", "1",
                  *(["--set", *QUICK_RESNET] if quick else []))


def mindcv_command(python: str, model: str, inputs: str, steps: int, quick: bool, batch: int) -> List[str]:
    settings = train_settings(MODELS[model], batch)
    return [python, os.path.join(BENCH_DIR, "mindcv_steps.py"), "--arch", model, "--inputs", inputs,
            "--steps", str(steps), "--warmup", "1", *(["--pynative"] if quick else []),
            *(arg for key, value in settings.items() for arg in (f"--{key.replace('_', '-')}", str(value)))]


def compare(model: str, python: str, workdir: str, args, load: LoadWatch) -> Dict[str, float]:
    """Median samples/s of each contender on ``model``, fresh processes alternating."""
    batch, size = (2, 32) if args.quick else (args.batch, args.image_size)
    steps = 2 if args.quick else (args.steps if model == "resnet18" else max(args.steps // 2, 3))
    inputs = write_batch(os.path.join(workdir, f"{model}.npz"), batch, size)
    runs = {SUITE: lambda: run_json(suite_command(model, inputs, batch, size, steps, args.quick))["samples_per_s"],
            MINDCV: lambda: run_json(mindcv_command(python, model, inputs, steps, args.quick, batch))["samples_per_s"]}
    found = alternate(runs, 1 if args.quick else args.rounds, load)
    rates = {label: median(values) for label, values in found.items()}
    return {"batch": batch, "image_size": size, "ms_suite_samples_per_s": round(rates[SUITE], 3),
            "mindcv_samples_per_s": round(rates[MINDCV], 3), "ratio": round(rates[SUITE] / rates[MINDCV], 4),
            "runs": found}


def main() -> None:
    args = parse_args(__doc__, add_arguments)
    python = mindcv_python(args.mindcv_python)
    load = LoadWatch(args.wait_quiet)
    models = ["resnet18"] if args.quick else (args.models or list(MODELS))
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for model in models:
            progress(f"{model}: ms-suite vs MindCV ...")
            results[model] = compare(model, python, workdir, args, load)
    rows = [[f"{m} (batch {r['batch']}, {r['image_size']}x{r['image_size']})", r["ms_suite_samples_per_s"],
             r["mindcv_samples_per_s"], f"{r['ratio']:.3f}"] for m, r in results.items()]
    worst = min(r["ratio"] for r in results.values())
    finish("ms-suite vs MindCV 0.3.0: training samples/s on CPU (same MindSpore, batch, settings)",
           ["model", SUITE, MINDCV, "ratio"], rows,
           {"benchmark": "vs_mindcv", "quick": args.quick, "models": results, **target(worst, TARGET)}, load,
           [f"ratio = ms-suite / MindCV (target >= {TARGET}); each figure the median of fresh processes run "
            "alternately; settings from configs/resnet/resnet{18,50}_imagenet.yaml"])


if __name__ == "__main__":
    main()
