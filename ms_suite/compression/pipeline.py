"""``compress``: measure the float model, compress and fine-tune, convert, export, report."""
from __future__ import annotations

import copy
import dataclasses
import logging
import os
from typing import Any, Callable, Dict, Optional, Sequence, TypeVar

from mindspore import nn

from ms_suite.compression.base import TrainContext, build_algorithm
from ms_suite.compression.report import Measurement, build_report, measure, write_report
from ms_suite.config import Config
from ms_suite.data import build_dataset, dataset_info
from ms_suite.deploy import Deployed, eval_samples, evaluate_file, export_verified, signature, train_batches
from ms_suite.deploy.int8 import ptq_static
from ms_suite.engine.callbacks import Callback
from ms_suite.engine.rundir import RunDir, log_to_file
from ms_suite.engine.tasks import get_task
from ms_suite.errors import UserError
from ms_suite.models import model_info
from ms_suite.models.flops import count_flops
from ms_suite.runtime import compile_cache, init_runtime
from ms_suite.runtime.memory import peak_rss_mb, release_compiled_graphs

log = logging.getLogger("ms_suite")
T = TypeVar("T")

REPORT_NAME = "compression_report.json"
PTQ_NAME = "reference_ptq_int8.onnx"
PTQ_CALIBRATION_BATCHES = 8
LOG_NAME = "compress.log"  # the whole run; each training stage also writes its train.log


def compress(cfg: Config, output_dir: str, callbacks: Sequence[Callback] = ()) -> Dict[str, Any]:
    """Run ``cfg.compression`` on ``cfg``'s model into ``output_dir``; returns the report.

    Writes ``reference.mindir``/``reference.onnx`` (the float model), ``compressed.mindir`` and
    the ONNX file a CPU user deploys (``compressed.onnx``; SimQAT: ``compressed_int8.onnx``, plus
    the post-training INT8 baseline ``reference_ptq_int8.onnx``), each ONNX file verified and
    described in ``<file>.json``; the fine-tuning run (train.log, checkpoints/, summary.json),
    ``compress.log`` and ``compression_report.json``. Metrics are measured on the deployed files.
    """
    cfg = _without_compile_cache(cfg)
    algorithm = build_algorithm(cfg)
    if cfg.parallel.mode != "standalone":
        raise UserError(f"ms-suite compress runs standalone; parallel.mode={cfg.parallel.mode} is not supported")
    runtime = init_runtime(cfg.runtime, cfg.train.seed)
    algorithm.check(runtime.device)
    run = RunDir(output_dir).create()
    with compile_cache(runtime, cfg.runtime, ""), log_to_file(os.path.join(run.path, LOG_NAME)):
        info = dataset_info(cfg.data)
        ctx = TrainContext(cfg, run.path, runtime.device, info, get_task(model_info(cfg.model.name).task), callbacks)
        inputs = ctx.task.example_inputs(cfg, info, cfg.export.batch_size)
        samples = eval_samples(cfg, _num_classes(ctx), inputs, cfg.eval.batch_size or cfg.train.batch_size)
        log.info("compress %s: evaluating and exporting the float reference model", algorithm.name)
        reference = algorithm.reference(ctx)
        before = measure(_evaluate(ctx, reference), count_flops(reference, info.input_shape), reference, inputs,
                         os.path.join(run.path, "reference.mindir"), ctx.task.name)
        float_file = export_verified(reference, ctx.task.name, inputs, os.path.join(run.path, "reference.onnx"),
                                     "ONNX", samples, {"network": "reference", "checkpoint": _source(cfg)})
        _use_deployed(ctx, before, float_file)
        net = _released(algorithm.train, ctx)
        log.info("compress %s: evaluating, converting and exporting the compressed model", algorithm.name)
        metrics, flops = _released(_evaluate, ctx, net), _released(count_flops, net, info.input_shape)
        layers = algorithm.layers(reference, net)
        deployed = _released(algorithm.deploy, ctx, net, inputs, os.path.join(run.path, "compressed.onnx"), samples,
                             {"network": f"{algorithm.name} fine-tuned", "run_dir": run.path})
        after = measure(metrics, flops, _released(algorithm.convert, net), inputs,
                        os.path.join(run.path, "compressed.mindir"), ctx.task.name, layers)
        _use_deployed(ctx, after, deployed)
        baselines = {"ptq_int8": _ptq_baseline(ctx, float_file.path)} if algorithm.name == "simqat" else {}
    header = {"algorithm": algorithm.name, "settings": dataclasses.asdict(algorithm.settings),
              "model": cfg.model.name, "dataset": cfg.data.name, "device": runtime.device,
              "pretrained": cfg.model.pretrained, "run_dir": run.path, "peak_rss_mb": peak_rss_mb()}
    report = build_report(header, before, after, layers, algorithm.notes, cfg.checkpoint.monitor or ctx.task.monitor)
    report["baselines"] = baselines
    write_report(report, os.path.join(run.path, REPORT_NAME))
    return report


def _released(stage: Callable[..., T], *args) -> T:
    """``stage(*args)``, then free the graphs MindSpore compiled for it: each stage (fine-tuning,
    evaluation, FLOP count, export and verification, convert) compiles its own, and kept, they add up:
    full-width SLB, whose every graph holds buffers the size of its weight logits, held 6.3 GB after
    fine-tuning and peaked at 9.5 GB in the stages after it; with the release its peak is 6.3 GB."""
    result = stage(*args)
    release_compiled_graphs()
    return result


def _num_classes(ctx: TrainContext) -> int:
    return ctx.cfg.model.num_classes or ctx.data_info.num_classes


def _source(cfg: Config) -> str:
    return cfg.compression.distill.teacher_checkpoint if cfg.compression.algorithm == "distill" \
        else cfg.model.pretrained


def _use_deployed(ctx: TrainContext, measurement: Measurement, deployed: Optional[Deployed]) -> None:
    """Measure the deployed file: its metrics over the whole eval split and its size."""
    if deployed is None:
        return
    measurement.network_metrics = measurement.metrics
    measurement.metrics = evaluate_file(deployed.path, deployed.format, ctx.cfg, _num_classes(ctx))
    measurement.deployed_file = deployed.path
    measurement.size_mb = os.path.getsize(deployed.path) / 1e6


def _ptq_baseline(ctx: TrainContext, float_path: str) -> Dict[str, Any]:
    """ONNX Runtime's static INT8 quantization of the float model, calibrated on training batches."""
    log.info("compress: post-training INT8 baseline (ONNX Runtime static quantization)")
    path = os.path.join(os.path.dirname(float_path), PTQ_NAME)
    ptq_static(float_path, path, train_batches(ctx.cfg, _num_classes(ctx), signature(ctx.task.name).inputs[0],
                                               PTQ_CALIBRATION_BATCHES))
    return {"file": path, "size_mb": os.path.getsize(path) / 1e6,
            "metrics": evaluate_file(path, "ONNX", ctx.cfg, _num_classes(ctx)),
            "calibration_batches": PTQ_CALIBRATION_BATCHES}


def use_pretrained(cfg: Config, path: str) -> None:
    """Point ``cfg`` at the trained float model to compress: ``model.pretrained``, or for
    distillation (where that model is the teacher) ``compression.distill.teacher_checkpoint``."""
    if not os.path.isfile(path):
        raise UserError(f"--pretrained {path}: no such checkpoint")
    if cfg.compression.algorithm == "distill":
        cfg.compression.distill.teacher_checkpoint = path
    else:
        cfg.model.pretrained = path


def _evaluate(ctx: TrainContext, net: nn.Cell) -> Dict[str, float]:
    cfg = ctx.cfg
    batch = cfg.eval.batch_size or cfg.train.batch_size
    dataset = build_dataset(cfg.data, "eval", batch, seed=cfg.train.seed,
                            num_classes=cfg.model.num_classes or ctx.data_info.num_classes)
    return ctx.task.evaluate(net, dataset, batch)


def _without_compile_cache(cfg: Config) -> Config:
    """No compile cache while compressing: a compressed network's shapes come from learned masks and
    rewritten classes that the recipe's cache key does not capture, so a cached graph could be
    reused with the wrong shapes."""
    cfg = copy.deepcopy(cfg)
    cfg.runtime.compile_cache = False
    return cfg
