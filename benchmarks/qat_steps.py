"""Quantization-aware training steps against the float step: SimQAT (INT8) and SLB (4-bit), on CPU.

One bare training step (``TrainOneStepCell`` + Momentum, batch 32, 8x8 single-channel input,
graph mode) of the zoo's ResNet-18 (CIFAR stem): float, after ``MinMaxSimQAT.apply``, and after
``SlbQuantAwareTraining.apply`` with the suite's compact quantizer. Each variant runs in a fresh
process (median of ``--steps`` steps after one compiled warm-up step, plus its peak RSS); rounds
alternate float, SimQAT, SLB. Target: a SimQAT step at most 3x the float step.

    .venv/bin/python benchmarks/qat_steps.py [--width 64] [--rounds 2] [--steps 10] [--no-slb] [--quick]
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from typing import Dict, List

from common import ROOT, LoadWatch, finish, median, parse_args, progress, target

TARGET = 3.0
VARIANTS = ("float", "simqat", "slb")


def add_arguments(parser) -> None:
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 base width (default 64, the recipe's)")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds of the three variants")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per process")
    parser.add_argument("--no-slb", action="store_true", help="skip SLB (its 5-D weights need GBs at full width)")


def worker(variant: str, width: int, steps: int) -> None:
    """Build and time one variant; prints one JSON line."""
    sys.path.insert(0, ROOT)
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor, nn
    from mindspore.common.dtype import QuantDtype
    from mindspore_gs.quantization import SlbQuantAwareTraining

    from common import timed_calls
    from ms_suite.compression.compat import MinMaxSimQAT, compact_slb_quantizers, rewrite_workspace
    from ms_suite.models.registry import create_model
    from ms_suite.runtime.memory import peak_rss_mb

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    net = create_model("resnet18_cifar", num_classes=10, in_chans=1, base_width=width)
    with tempfile.TemporaryDirectory() as workdir:  # the rewritten sources must outlive the compile
        with rewrite_workspace(net, workdir):
            if variant == "simqat":
                net = MinMaxSimQAT({"per_channel": [False, True], "symmetric": [False, True],
                                    "narrow_range": [False, False], "enable_fusion": False,
                                    "bn_fold": False}).apply(net)
            elif variant == "slb":
                net = compact_slb_quantizers(SlbQuantAwareTraining({
                    "quant_dtype": [QuantDtype.INT8, QuantDtype.INT4], "enable_act_quant": False,
                    "enable_bn_calibration": False, "epoch_size": 10, "has_trained_epoch": 0}).apply(net))
        loss = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
        step = nn.TrainOneStepCell(loss, nn.Momentum(net.trainable_params(), 0.01, 0.9)).set_train(True)
        rng = np.random.default_rng(0)
        images = Tensor(rng.random((32, 1, 8, 8), np.float32))
        labels = Tensor(rng.integers(0, 10, 32).astype(np.int32))
        times = timed_calls(lambda: step(images, labels).asnumpy(), steps)
    print(json.dumps({"step_s": float(np.median(times)), "peak_rss_mb": peak_rss_mb()}))


def launch(variant: str, width: int, steps: int) -> Dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, "--worker", variant, str(width), str(steps)], cwd=ROOT,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} worker exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args(__doc__, add_arguments)
    width, steps, rounds = (8, 3, 1) if args.quick else (args.width, args.steps, args.rounds)
    variants = VARIANTS[:2] if args.no_slb else VARIANTS
    load = LoadWatch(args.wait_quiet)
    runs: Dict[str, List[Dict[str, float]]] = {variant: [] for variant in variants}
    for round_ in range(rounds):
        for variant in variants:
            progress(f"round {round_ + 1}/{rounds}: {variant}")
            runs[variant].append(load.run(variant, lambda v=variant: launch(v, width, steps)))
    step = {variant: median([run["step_s"] for run in runs[variant]]) for variant in variants}
    rss = {variant: max(run["peak_rss_mb"] for run in runs[variant]) for variant in variants}
    rows = [(variant, f"{step[variant]:.3f}", f"{step[variant] / step['float']:.2f}", f"{rss[variant]:.0f}")
            for variant in variants]
    result = {"benchmark": "qat_steps", "quick": args.quick, "width": width, "step_s": step, "peak_rss_mb": rss,
              "slb_ratio": round(step["slb"] / step["float"], 3) if "slb" in step else None,
              **target(step["simqat"] / step["float"], TARGET, key="simqat_ratio", at_most=True)}
    finish(f"QAT train step vs float, ResNet-18 width {width}, batch 32", ["variant", "step s", "x float",
                                                                            "peak RSS MB"], rows, result, load)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
