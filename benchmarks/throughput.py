"""Model throughput and MFU on CPU: ms-suite's train and inference steps on random in-memory batches.

Rows: ResNet-18 (CIFAR stem, batch 32, 32x32) and ResNet-50 (batch 16, 224x224), train and
inference; BERT-Tiny (batch 32) and BERT-Base (batch 8) pretraining (masked LM + next sentence,
seq 128), train. Each row runs in a fresh process (benchmarks/ms_steps.py) with the recipe's own
settings. MFU = model FLOPs per sample x samples/s / peak FLOP/s, where model FLOPs are the
forward pass (x3 for training: backward ~ 2x forward) and the CPU peak is
cores x fp32 FLOPs per cycle of the vector units (vendor, ISA, FMA pipes) x clock (ms_suite.profiling.mfu.cpu_peak).

    .venv/bin/python benchmarks/throughput.py [--quick]
"""
from __future__ import annotations

from typing import List, NamedTuple, Tuple

from common import QUICK_SETTINGS, LoadWatch, finish, parse_args, progress, run_json, worker


class Row(NamedTuple):
    label: str
    recipe: str
    batch: int
    mode: str
    steps: int
    quick: Tuple[str, ...]  # --quick: extra ms_steps.py arguments that shrink the work


ROWS: List[Row] = [
    Row("ResNet-18 CIFAR", "configs/resnet/resnet18_cifar10.yaml", 32, "train", 20, ()),
    Row("ResNet-18 CIFAR", "configs/resnet/resnet18_cifar10.yaml", 32, "infer", 30, ()),
    Row("ResNet-50", "configs/resnet/resnet50_synthetic.yaml", 16, "train", 6, ("--input-shape", "3", "64", "64")),
    Row("ResNet-50", "configs/resnet/resnet50_synthetic.yaml", 16, "infer", 10, ("--input-shape", "3", "64", "64")),
    Row("BERT-Tiny pretraining", "configs/bert/bert_tiny_pretrain.yaml", 32, "train", 20, ("--input-shape", "32")),
    Row("BERT-Base pretraining", "configs/bert/bert_base_pretrain.yaml", 8, "train", 4, ("--input-shape", "32")),
]
QUICK_ROWS = (1, 4)  # image inference and BERT training (vs_pytorch.py --quick times a ResNet train step)


def bert_registered() -> bool:
    from ms_suite.models import list_models

    return "bert_tiny_pretraining" in list_models()


def measure(row: Row, quick: bool) -> dict:
    batch, steps = (2, 2) if quick else (row.batch, row.steps)
    extra = [*row.quick, "--set", *QUICK_SETTINGS] if quick else []
    cmd = worker("ms_steps.py", "-c", row.recipe, "--batch", str(batch), "--mode", row.mode,
                 "--steps", str(steps), "--warmup", "1" if quick else "2", "--flops", *extra)
    return run_json(cmd)


def main() -> None:
    args = parse_args(__doc__)
    from ms_suite.engine.callbacks.mfu import cpu_peak

    peak = cpu_peak()
    rows = [r for i, r in enumerate(ROWS) if not args.quick or i in QUICK_ROWS]
    if not bert_registered():
        progress("BERT models are not registered (model_zoo/bert/): skipping the BERT rows")
        rows = [r for r in rows if "BERT" not in r.label]
    load, results, table = LoadWatch(args.wait_quiet), [], []
    for row in rows:
        progress(f"{row.label} {row.mode} ...")
        found = load.run(f"{row.label} {row.mode}", lambda: measure(row, args.quick))
        flops = found["forward_flops_per_sample"] * (3 if row.mode == "train" else 1)
        achieved = flops * found["samples_per_s"]
        mfu = achieved / (peak.tflops * 1e12) if peak.tflops else None
        results.append({"model": row.label, "mode": row.mode, "batch": found["batch"],
                        "input_shape": found["input_shape"], "samples_per_s": found["samples_per_s"],
                        "step_ms": round(1000 * found["median_step_s"], 2), "flops_per_sample": flops,
                        "achieved_gflops": round(achieved / 1e9, 3), "mfu": round(mfu, 5) if mfu else None})
        table.append([row.label, row.mode, found["batch"], "x".join(map(str, found["input_shape"])),
                      f"{found['samples_per_s']:.2f}", f"{1000 * found['median_step_s']:.1f}",
                      f"{flops / 1e9:.3f}", f"{achieved / 1e9:.1f}", f"{100 * mfu:.1f}%" if mfu else "n/a"])
    finish("Model throughput on CPU (ms-suite step, random in-memory batches)",
           ["model", "mode", "batch", "input", "samples/s", "step ms", "GFLOPs/sample", "GFLOP/s", "MFU"],
           table, {"benchmark": "throughput", "quick": args.quick, "rows": results,
                   "peak_tflops": peak.tflops, "peak_source": peak.source}, load,
           [f"peak {peak.tflops} TFLOPS: {peak.source}",
            "train FLOPs = 3 x forward; BERT's MLM head counted at the masked positions only (15%)"])


if __name__ == "__main__":
    main()
