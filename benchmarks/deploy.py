"""Deployed files on this CPU: INT8 (SimQAT, PTQ), pruned and distilled ONNX models against the float one.

Reads `ms-suite compress` run folders (a SimQAT run is required: it holds reference.onnx,
compressed_int8.onnx and reference_ptq_int8.onnx) and times every ONNX file in ONNX Runtime with
the same thread count, alternating the files round by round. Accuracy and sizes come from the
runs' compression_report.json (deployed files over the whole eval split). Also lists the operators
ONNX Runtime's optimized INT8 graph runs (QLinearConv, QLinearAdd, QGemm: INT8 kernels) and, from
ONNX Runtime's session profiler, the kernel time per operator type of the float and INT8 files at
batch 32.

    python benchmarks/deploy.py runs/compress/simqat [runs/compress/scop runs/compress/unipruner ...]
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import LoadWatch, alternate, finish, median, parse_args, progress, target  # noqa: E402

from ms_suite.compression.compare import read_variants  # noqa: E402
from ms_suite.deploy import onnx_session  # noqa: E402

TARGETS = {"top1_drop_pt": 0.5, "size_ratio": 0.30, "latency_ratio_b32": 0.6}


def options(parser) -> None:
    parser.add_argument("runs", nargs="+", help="compression run folders; one must be a SimQAT run")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (each: every file once)")
    parser.add_argument("--calls", type=int, default=10, help="timed calls per file per round")


def optimized_ops(path: str, threads: int) -> dict:
    """Operator counts of the graph ONNX Runtime actually runs (after its optimizations)."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        optimized = os.path.join(tmp, "optimized.onnx")
        onnx_session(path, threads, optimized_path=optimized)
        return dict(collections.Counter(node.op_type for node in onnx.load(optimized).graph.node))


CROPPED = "float, taps cropped"


def cropped_float(base, directory: str):
    """The float file with the kernel taps that only meet zero padding cropped, as the INT8 file has
    them: the INT8 file's latency can also be read against a float file on that footing."""
    import onnx

    from ms_suite.deploy.onnx_graph import Graph, crop_padding_taps

    model = onnx.load(base.file)
    graph = Graph(model)
    crop_padding_taps(graph)
    graph.finish()
    path = os.path.join(directory, "reference_cropped.onnx")
    onnx.save(model, path)
    return dataclasses.replace(base, name=CROPPED, file=path, size_mb=os.path.getsize(path) / 1e6, latency_ms={})


def kernel_ms(path: str, threads: int, feeds: dict, calls: int) -> dict:
    """Kernel time per call by operator type, from ONNX Runtime's session profiler (one warm-up
    call, then ``calls`` profiled calls)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.enable_profiling, options.profile_file_prefix = True, os.path.join(tmp, "profile")
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        for _ in range(calls + 1):
            session.run(None, feeds)
        with open(session.end_profiling()) as fh:
            kernels = [e for e in json.load(fh) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    totals: dict = collections.Counter()
    for event in kernels[len(kernels) // (calls + 1):]:  # every call runs the same kernels; skip the warm-up's
        totals[event["args"]["op_name"]] += event["dur"] / 1e3 / calls
    return {op: round(ms, 3) for op, ms in totals.most_common()}


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def cpu_flags() -> list:
    with open("/proc/cpuinfo") as fh:
        flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    return [flag for flag in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if flag in flags]


def timer(session, feeds: dict, calls: int):
    def run() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            session.run(None, feeds)
        return 1e3 * (time.perf_counter() - start) / calls

    session.run(None, feeds)  # warm-up
    return run


def feeds_for(session, batch: int) -> dict:
    import numpy as np

    value = session.get_inputs()[0]
    shape = [batch if not isinstance(d, int) else d for d in value.shape]
    return {value.name: np.random.default_rng(0).normal(size=shape).astype(np.float32)}


def measure(variants, args, load: LoadWatch) -> dict:
    """``{batch: {variant: median ms}}`` from alternating rounds over all files."""
    latency = {}
    for batch in (1, 32):
        runs = {}
        for v in variants:
            session = onnx_session(v.file, args.threads)
            runs[v.name] = timer(session, feeds_for(session, batch), 1 if args.quick else args.calls)
        progress(f"batch {batch}: {len(runs)} files, {args.rounds} alternating rounds")
        times = alternate(runs, 1 if args.quick else args.rounds, load)
        latency[batch] = {name: median(values) for name, values in times.items()}
    return latency


def main() -> None:
    args = parse_args(__doc__, options)
    variants = [v for v in read_variants(args.runs) if v.file.endswith(".onnx")]
    by_name = {v.name: v for v in variants}
    if not {"float", "SimQAT INT8"} <= set(by_name):
        raise SystemExit("pass a SimQAT compression run folder (float and SimQAT INT8 files)")
    with tempfile.TemporaryDirectory() as tmp:
        variants.insert(1, cropped_float(by_name["float"], tmp))
        by_name[CROPPED] = variants[1]
        load = LoadWatch(args.wait_quiet)
        load.check("timing")
        latency = measure(variants, args, load)
        result = summarize(variants, by_name, latency, args)
    report(variants, latency, result, load, args)


def summarize(variants, by_name: dict, latency: dict, args) -> dict:
    base, int8 = by_name["float"], by_name["SimQAT INT8"]
    feeds = feeds_for(onnx_session(base.file, args.threads), 32)
    result = {"threads": args.threads, "cpu_flags": cpu_flags(), "onnxruntime": ort_version(),
              "float_top1": base.top1, "int8_top1": int8.top1,
              "top1_drop_pt": target(base.top1 - int8.top1, TARGETS["top1_drop_pt"], "value", at_most=True),
              "size_ratio": target(int8.size_mb / base.size_mb, TARGETS["size_ratio"], at_most=True),
              "latency_ratio_b32": target(latency[32]["SimQAT INT8"] / latency[32]["float"],
                                          TARGETS["latency_ratio_b32"], at_most=True),
              "latency_ratio_b1": round(latency[1]["SimQAT INT8"] / latency[1]["float"], 4),
              "vs_cropped_float": {"size_ratio": round(int8.size_mb / by_name[CROPPED].size_mb, 4),
                                   "latency_ratio_b32": round(latency[32]["SimQAT INT8"] / latency[32][CROPPED], 4),
                                   "latency_ratio_b1": round(latency[1]["SimQAT INT8"] / latency[1][CROPPED], 4)},
              "int8_ops": optimized_ops(int8.file, args.threads),
              "kernel_ms_b32": {name: kernel_ms(by_name[name].file, args.threads, feeds, 1 if args.quick else 10)
                                for name in ("float", CROPPED, "SimQAT INT8")},
              "latency_ms": latency}
    for v in variants:
        if v.name not in ("float", "SimQAT INT8", CROPPED):
            result[f"{v.name}_latency_ratio_b32"] = round(latency[32][v.name] / latency[32]["float"], 4)
            result[f"{v.name}_latency_ratio_b1"] = round(latency[1][v.name] / latency[1]["float"], 4)
            result[f"{v.name}_top1"] = v.top1
    return result


def report(variants, latency: dict, result: dict, load: LoadWatch, args) -> None:
    rows = [[v.name, f"{v.top1:.2f}", f"{v.size_mb:.2f}", f"{latency[1][v.name]:.2f}", f"{latency[32][v.name]:.2f}",
             f"{latency[32][v.name] / latency[32]['float']:.3f}"] for v in variants]
    finish("Deployed ONNX files (ONNX Runtime CPU)",
           ["variant", "top-1 %", "MB", "ms b1", "ms b32", "b32 vs float"], rows, result, load,
           notes=[f"{args.threads} intra-op threads; median of {args.rounds} alternating rounds x {args.calls} calls",
                  f"'{CROPPED}': reference.onnx with the kernel taps that only meet padding cropped, as in the "
                  "INT8 file (same function; written for this benchmark, top-1 is the float file's)",
                  f"INT8 graph as run by ONNX Runtime: {result['int8_ops']}",
                  f"kernel ms per call at batch 32 (ORT profiler): {result['kernel_ms_b32']}"])


if __name__ == "__main__":
    main()
