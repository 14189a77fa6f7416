"""The Python API: what every ``ms-suite`` command does, as functions that take a recipe and return results.

A recipe is a YAML path (with optional ``--set``-style ``overrides``) or a loaded
:class:`~ms_suite.config.Config`::

    from ms_suite import api

    summary = api.train("configs/quickstart.yaml", output_dir="runs/qs")
    metrics = api.evaluate("configs/quickstart.yaml", summary["best_checkpoint"])
    deployed = api.export("configs/quickstart.yaml", summary["best_checkpoint"], "qs.onnx")

The command line (:mod:`ms_suite.cli`) parses arguments and calls these functions; the benchmarks
call them too. Errors a user can fix are :class:`ms_suite.errors.UserError` (one line).
"""
from __future__ import annotations

import glob
import os
from typing import Any, Dict, List, Optional, Sequence, Union

from ms_suite.config import Config, load_config
from ms_suite.errors import UserError

ConfigLike = Union[str, "os.PathLike[str]", Config]
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, "configs")


def resolve_config(recipe: ConfigLike, overrides: Sequence[str] = ()) -> Config:
    """A validated Config from a recipe path (plus overrides) or a Config (overrides not allowed)."""
    if isinstance(recipe, Config):
        if overrides:
            raise UserError("overrides apply to a recipe file; change the Config object instead")
        return recipe
    return load_config(os.fspath(recipe), overrides)


def default_output_dir(recipe: ConfigLike, cfg: Config) -> str:
    """``runs/<recipe stem>-<timestamp>`` (a Config object: ``runs/<model name>-<timestamp>``)."""
    from ms_suite.engine.rundir import default_output_dir as named_output_dir

    return named_output_dir(cfg.model.name if isinstance(recipe, Config) else os.fspath(recipe))


def train(recipe: ConfigLike, output_dir: Optional[str] = None, resume: Optional[str] = None,
          overrides: Sequence[str] = (), callbacks: Sequence[Any] = (), progress: bool = True) -> Dict[str, Any]:
    """Train a recipe into a run directory; returns its ``summary.json`` contents.

    ``resume``: ``"auto"`` (the newest valid checkpoint in ``output_dir``) or a checkpoint path.
    ``callbacks`` (:class:`ms_suite.engine.callbacks.Callback`) run after the recipe's own;
    ``progress=False`` keeps the progress display off."""
    from ms_suite.engine.trainer import Trainer

    cfg = resolve_config(recipe, overrides)
    if resume and resume != "auto" and not os.path.isfile(resume):
        raise UserError(f"--resume {resume}: no such checkpoint (use --resume auto or a .ckpt path)")
    return Trainer(cfg, output_dir or default_output_dir(recipe, cfg), resume=resume, callbacks=callbacks,
                   progress=progress).fit()


def _trained_model(cfg: Config, checkpoint: str):
    """(task, net, dataset info) of ``checkpoint``, built from the configuration it stores."""
    from ms_suite.checkpoint import read_checkpoint
    from ms_suite.engine.model_config import build_model_from_checkpoint
    from ms_suite.runtime import init_runtime
    from ms_suite.runtime.auto_parallel import check_single_device_build

    check_single_device_build(cfg.parallel)  # a sliced recipe needs merged weights, whatever the file
    params, meta = read_checkpoint(checkpoint)  # before any log line: a bad file is the only output
    init_runtime(cfg.runtime, cfg.train.seed)
    return build_model_from_checkpoint(cfg, checkpoint, params, meta)


def evaluate(recipe: ConfigLike, checkpoint: str, overrides: Sequence[str] = ()) -> Dict[str, float]:
    """The task's metrics of ``checkpoint`` (EMA weights when present) on the recipe's eval split."""
    from ms_suite.data import build_dataset

    cfg = resolve_config(recipe, overrides)
    task, net, info = _trained_model(cfg, checkpoint)
    batch = cfg.eval.batch_size or cfg.train.batch_size
    return task.evaluate(net, build_dataset(cfg.data, "eval", batch, num_classes=info.num_classes), batch)


def export(recipe: ConfigLike, checkpoint: str, output: str, fmt: Optional[str] = None, verify: bool = True,
           overrides: Sequence[str] = ()):
    """Export ``checkpoint`` to ``output`` (MINDIR, ONNX or AIR; default from the extension, else
    ``export.format``). With ``verify`` the written file runs in its own runtime on eval samples and
    must match the network. Returns the :class:`ms_suite.deploy.Deployed` file and its manifest."""
    from ms_suite.checkpoint import read_checkpoint_meta
    from ms_suite.deploy import check_device, eval_samples, export_verified, resolve_format

    cfg = resolve_config(recipe, overrides)
    fmt = resolve_format(output, fmt, cfg.export.format)
    check_device(fmt, cfg.runtime.device)
    task, net, info = _trained_model(cfg, checkpoint)
    inputs = task.example_inputs(cfg, info, cfg.export.batch_size)
    samples = eval_samples(cfg, info.num_classes, inputs, cfg.eval.batch_size or cfg.train.batch_size) \
        if verify else None
    source = {"checkpoint": os.path.abspath(checkpoint), "step": read_checkpoint_meta(checkpoint).get("step"),
              "recipe": None if isinstance(recipe, Config) else os.fspath(recipe)}
    return export_verified(net, task.name, inputs, output, fmt, samples, source)


def compress(recipe: ConfigLike, output_dir: Optional[str] = None, pretrained: Optional[str] = None,
             overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """Apply ``compression.algorithm`` to the trained float model ``pretrained`` (or the recipe's);
    returns the before/after report (``compression_report.json``), measured on the deployed files."""
    from ms_suite.compression import compress as run_compression, use_pretrained

    cfg = resolve_config(recipe, overrides)
    if pretrained:
        use_pretrained(cfg, pretrained)
    return run_compression(cfg, output_dir or default_output_dir(recipe, cfg))


def tune(recipe: str, overrides: Sequence[str] = (), study: Optional[str] = None, output_dir: Optional[str] = None,
         storage: Optional[str] = None, trials: Optional[int] = None) -> Dict[str, Any]:
    """Search the recipe's ``search_space`` with Optuna; returns the study summary (trials, best, files)."""
    from ms_suite.tune import Tuner

    if trials is not None and trials < 1:
        raise UserError(f"--trials {trials}: give at least 1")
    return Tuner(recipe, overrides, study=study, output_dir=output_dir, storage=storage, trials=trials).run()


def recipes_by_model(config_dir: str = CONFIG_DIR) -> Dict[str, List[str]]:
    """Map model name -> recipe paths (relative to the repository) that train it."""
    import yaml

    found: Dict[str, List[str]] = {}
    paths = glob.glob(os.path.join(config_dir, "**", "*.yaml"), recursive=True)
    for path in sorted(paths, key=lambda p: (p.count(os.sep), p)):  # top-level recipes first
        if os.sep + "base" + os.sep in path or os.path.basename(path).startswith("base"):
            continue  # bases are building blocks, not recipes
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
        if "model" not in raw and not raw.get("base"):
            continue
        name = load_config(path).model.name
        found.setdefault(name, []).append(os.path.relpath(path, REPO_ROOT))
    return found


def list_zoo() -> List[Dict[str, Any]]:
    """Every registered model: family, input, parameters (M), GFLOPs, recipes, reference accuracy."""
    from ms_suite.models import list_models, model_info
    from ms_suite.models.stats import model_stats

    recipes = recipes_by_model()
    entries = []
    for name in list_models():
        info, stats = model_info(name), model_stats(name)
        entries.append({"name": name, "family": info.family, "input": "x".join(map(str, info.input_size)),
                        "params_m": round(stats["params"] / 1e6, 2), "gflops": round(stats["flops"] / 1e9, 3),
                        "recipes": recipes.get(name, []), "reference": info.reference})
    return entries


def convert_weights(source: str, src: str, dst: str, arch: Optional[str] = None) -> Dict[str, Any]:
    """Convert third-party weights (``source``: a registered format, e.g. ``torchvision``, ``hf``) into
    a MindSpore checkpoint at ``dst``; returns what was converted."""
    from ms_suite.registry import CONVERTERS

    return CONVERTERS.get(source)(src, dst, arch)


def compare(run_dirs: Sequence[str], threads: Optional[int] = None, repeats: int = 20,
            plot_file: str = "compare.png") -> Dict[str, Any]:
    """The deployable variants of compression runs, measured in ONNX Runtime with the same thread count:
    ``headers`` and ``rows`` (top-1, file MB, latency at batch 1 and 32, params, FLOPs), the
    accuracy-vs-latency ``plot`` and the ``table`` JSON written next to it."""
    from ms_suite.compression.compare import (CALLS_PER_ROUND, TABLE_HEADERS, measure_latency, plot, read_variants,
                                              table_rows, write_json)

    threads = (os.cpu_count() or 1) if threads is None else threads
    if threads < 1 or repeats < 1:
        raise UserError("--threads and --repeats take a positive number")
    variants = read_variants(run_dirs)
    measure_latency(variants, threads, repeats)
    return {"headers": TABLE_HEADERS, "rows": table_rows(variants), "threads": threads, "repeats": repeats,
            "calls_per_round": CALLS_PER_ROUND,
            "plot": plot(variants, plot_file, threads),
            "table": write_json(variants, os.path.splitext(plot_file)[0] + ".json", threads)}


def plot(run_dirs: Sequence[str], output: str, metric: Optional[str] = None) -> str:
    """Learning curves (loss, lr, the eval metric) of runs in one PNG; returns its path."""
    from ms_suite.profiling.plot import plot_runs

    return plot_runs(run_dirs, output, metric)


def insight_start(runs: str, port: int) -> str:
    """Start MindInsight (from its own environment) on the runs under ``runs``; returns its URL."""
    from ms_suite.profiling import insight

    return insight.start(runs, port)


def insight_stop(port: int) -> None:
    """Stop the MindInsight server on ``port``."""
    from ms_suite.profiling import insight

    insight.stop(port)


def prepare_vocab(inputs: Sequence[str], output: str, vocab_size: int = 30522, min_frequency: int = 2,
                  lower_case: bool = True) -> Dict[str, Any]:
    """Train a WordPiece ``vocab.txt`` (and ``tokenizer_config.json``) in ``output`` from raw text files."""
    from ms_suite.data.vocab import build_wordpiece_vocab

    return build_wordpiece_vocab(inputs, output, vocab_size, min_frequency, lower_case)


def prepare_bert(inputs: Sequence[str], vocab: str, output: str, lower_case: Optional[bool] = None,
                 **options: Any) -> Dict[str, Any]:
    """Write BERT pretraining shards (masked LM + next sentence) from raw text; ``options`` are
    :class:`ms_suite.data.bert_pretraining.PretrainingOptions` fields. Returns what was written."""
    from ms_suite.data.bert_pretraining import PretrainingOptions, create_pretraining_data
    from ms_suite.data.text import WordPieceTokenizer

    opts = PretrainingOptions(**options)
    meta = create_pretraining_data(inputs, WordPieceTokenizer(vocab, lower_case), output, opts)
    return {**meta, "seq_len": opts.seq_len, "max_predictions": opts.predictions}


def launch(kind: str, **flags: Any) -> int:
    """Run a launch script's job: ``standalone`` (train on one device), ``eval`` or ``distribute``
    (this node's ranks under msrun or an Ascend rank table, supervised). ``flags`` are the fields of
    :class:`ms_suite.launch.jobs.LaunchJob`; returns the job's exit code."""
    from ms_suite.launch import jobs

    runners = {"standalone": jobs.run_standalone, "eval": jobs.run_eval, "distribute": jobs.run_distribute}
    if kind not in runners:
        raise UserError(f"unknown launch job {kind!r}; use one of {', '.join(runners)}")
    return runners[kind](jobs.LaunchJob(**flags))


def read_rank_table(path: str):
    """Load and check an Ascend rank table (HCCL json); a bad one raises ``RankTableError`` listing
    every problem."""
    from ms_suite.launch.rank_table import load_rank_table

    return load_rank_table(path)


def write_rank_table(hosts: Sequence[str], devices_per_host: int, output: str, pattern: Optional[str] = None,
                     hccn_confs: Sequence[str] = ()):
    """Write a rank table (hccl json v1.0) for ``hosts`` with device IPs from a pattern or each host's
    ``/etc/hccn.conf``; returns the table as read back."""
    import json

    from ms_suite.launch.rank_table import build_rank_table, check_rank_table, device_ip_table, load_rank_table

    if devices_per_host < 1:
        raise UserError(f"--devices-per-host {devices_per_host} must be at least 1")
    table = build_rank_table(list(hosts), device_ip_table(list(hosts), devices_per_host, pattern=pattern,
                                                          hccn_confs=hccn_confs))
    check_rank_table(table, output)
    with open(output, "w") as fh:
        json.dump(table, fh, indent=4)
    return load_rank_table(output)
