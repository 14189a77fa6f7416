"""Compare compression runs on their deployed files: one row per variant (float, SimQAT INT8, PTQ
INT8, SLB, SCOP, UniPruner, distilled) with deployed top-1, file size, ONNX Runtime latency at
batch 1 and 32 (one thread count for all), parameters and FLOPs; and an accuracy-vs-latency plot."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from ms_suite.compression.pipeline import REPORT_NAME
from ms_suite.deploy import onnx_session
from ms_suite.deploy.verify import median_latency_ms
from ms_suite.errors import UserError

VARIANT_NAMES = {"simqat": "SimQAT INT8", "slb": "SLB", "scop": "SCOP", "unipruner": "UniPruner",
                 "distill": "distilled"}
BATCHES = (1, 32)
CALLS_PER_ROUND = 5  # timed calls of each file per round (median), after one warm-up call


@dataclasses.dataclass
class Variant:
    name: str
    run_dir: str
    file: str
    top1: Optional[float]
    size_mb: float
    params: int
    flops: int
    latency_ms: Dict[int, Optional[float]] = dataclasses.field(default_factory=dict)


def read_variants(run_dirs: Sequence[str]) -> List[Variant]:
    """The deployable variants recorded in compression run folders (the float model once)."""
    variants: List[Variant] = []
    for run_dir in run_dirs:
        path = os.path.join(run_dir, REPORT_NAME)
        if not os.path.isfile(path):
            raise UserError(f"{run_dir}: no {REPORT_NAME}; pass folders written by `ms-suite compress`")
        with open(path) as fh:
            report = json.load(fh)
        before, after = report["before"], report["after"]
        if not any(v.name == "float" for v in variants) and report["algorithm"] != "distill":
            variants.append(_variant("float", run_dir, before))
        variants.append(_variant(VARIANT_NAMES.get(report["algorithm"], report["algorithm"]), run_dir, after))
        ptq = report.get("baselines", {}).get("ptq_int8")
        if ptq:
            variants.append(Variant("PTQ INT8", run_dir, ptq["file"], ptq["metrics"].get("top1"),
                                    os.path.getsize(ptq["file"]) / 1e6, before["params"], before["flops"]))
    return variants


def _variant(name: str, run_dir: str, side: dict) -> Variant:
    file = side.get("deployed_file") or side["file"]
    return Variant(name, run_dir, file, side["metrics"].get("top1"), os.path.getsize(file) / 1e6,
                   side["params"], side["flops"])


def _feeds(session, batch: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for value in session.get_inputs():
        shape = [batch if not isinstance(d, int) else d for d in value.shape]
        feeds[value.name] = rng.normal(size=shape).astype(np.float32)
    return feeds


def measure_latency(variants: Sequence[Variant], threads: int, repeats: int) -> None:
    """Median ONNX Runtime latency of every ONNX variant at each of BATCHES, all on ``threads``
    intra-op threads; the files are measured in turn, one round (CALLS_PER_ROUND calls each) at a
    time, so load spikes spread."""
    sessions = {v.file: onnx_session(v.file, threads) for v in variants if v.file.endswith(".onnx")}
    for batch in BATCHES:
        feeds = {path: _feeds(session, batch) for path, session in sessions.items()}
        times: Dict[str, List[float]] = {path: [] for path in sessions}
        for _ in range(repeats):
            for path, session in sessions.items():
                times[path].append(median_latency_ms(lambda f=feeds[path], s=session: s.run(None, f), (),
                                                     CALLS_PER_ROUND))
        for variant in variants:
            variant.latency_ms[batch] = float(np.median(times[variant.file])) if variant.file in times else None


def table_rows(variants: Sequence[Variant]) -> List[List[str]]:
    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    return [[v.name, fmt(v.top1, ".2f"), f"{v.size_mb:.2f}", *(fmt(v.latency_ms.get(b), ".2f") for b in BATCHES),
             f"{v.params:,}", f"{v.flops:,}", os.path.basename(v.file)] for v in variants]


TABLE_HEADERS = ["variant", "top-1 %", "file MB", *(f"ms @ batch {b}" for b in BATCHES), "params", "FLOPs", "file"]


def plot(variants: Sequence[Variant], path: str, threads: int) -> str:
    """Deployed top-1 against latency at the largest batch, one labelled point per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = BATCHES[-1]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    shown = sorted((v for v in variants if v.top1 is not None and v.latency_ms.get(batch) is not None),
                   key=lambda v: v.latency_ms[batch])
    for index, v in enumerate(shown):  # labels alternate above and below, so neighbours do not overlap
        ax.scatter(v.latency_ms[batch], v.top1, s=30 + 8 * v.size_mb)
        ax.annotate(f"{v.name} ({v.size_mb:.1f} MB)", (v.latency_ms[batch], v.top1), textcoords="offset points",
                    xytext=(5, 6 if index % 2 == 0 else -14), fontsize=8)
    ax.set_xlabel(f"ONNX Runtime latency at batch {batch}, ms ({threads} thread{'s' if threads > 1 else ''})")
    ax.set_ylabel("deployed top-1 %")
    ax.set_title("Compression variants: accuracy vs latency (marker size: file MB)")
    ax.margins(x=0.2, y=0.1)  # room for the labels
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_json(variants: Sequence[Variant], path: str, threads: int) -> str:
    with open(path, "w") as fh:
        json.dump({"threads": threads, "variants": [dataclasses.asdict(v) for v in variants]}, fh, indent=2)
    return path
