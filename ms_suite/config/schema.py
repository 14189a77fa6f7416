"""The typed recipe schema. Every key a recipe may set is a field here; anything else is an error.

Ranges and choices live next to the field (``_f(default, ge=..., registry=...)``) so validation,
``--set`` coercion and the generated config reference (docs/reference/config.md) all read from one place.
A name that picks an extension (model, dataset, optimizer, schedule, compression algorithm) is checked
against its registry (:mod:`ms_suite.registry`), so adding one needs no edit here.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Literal, Optional

from ms_suite.registry import COMPRESSION, DATASETS, MODELS, OPTIMIZERS, SCHEDULES


def _f(default: Any = None, doc: str = "", **bounds: Any) -> Any:
    """A schema field with a docstring, optional bounds (ge, gt, le, lt) and the ``registry`` its value names."""
    meta = {"doc": doc, **bounds}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class ModelConfig:
    name: str = _f("resnet18_cifar", "registered model name (`ms-suite list`)", registry=MODELS)
    num_classes: Optional[int] = _f(None, "classifier size; null takes the dataset's", ge=1)
    pretrained: Optional[str] = _f(None, "checkpoint to start from (classifier dropped if its size differs)")
    kwargs: Dict[str, Any] = _f({}, "extra builder arguments, e.g. {in_chans: 1, zero_init_residual: true}")


@dataclasses.dataclass
class DataConfig:
    name: str = _f("digits", "dataset type", registry=DATASETS)
    path: Optional[str] = _f(None, "dataset root (not needed for digits and synthetic)")
    num_workers: int = _f(2, "parallel workers for decode and augmentation", ge=1)
    image_size: int = _f(224, "training crop size (imagefolder, mindrecord, synthetic)", ge=1)
    eval_resize: int = _f(256, "eval: resize the short side to this, then center-crop image_size", ge=1)
    augment: bool = _f(True, "training augmentation (dataset's standard recipe)")
    hflip: bool = _f(True, "random horizontal flip in training augmentation")
    mean: Optional[List[float]] = _f(None, "normalisation mean per channel (0-255 scale); null: dataset default")
    std: Optional[List[float]] = _f(None, "normalisation std per channel (0-255 scale); null: dataset default")
    val_split: float = _f(0.2, "digits, text_classification from one file: held-out fraction for evaluation",
                          gt=0.0, lt=1.0)
    mixup: float = _f(0.0, "mixup alpha (0 = off)", ge=0.0)
    cutmix: float = _f(0.0, "cutmix alpha (0 = off)", ge=0.0)
    mix_prob: float = _f(1.0, "probability of applying mixup/cutmix to a batch", ge=0.0, le=1.0)
    num_classes: int = _f(1000, "synthetic/mindrecord: number of classes", ge=1)
    synthetic_samples: int = _f(1024, "synthetic: samples per epoch", ge=1)
    columns: List[str] = _f(["image", "label"], "mindrecord: image and label column names")
    # --- text (text_classification, bert_pretraining)
    seq_len: Optional[int] = _f(None, "text: tokens per example with [CLS]/[SEP], at most the model's "
                                      "max_position_embeddings; null: 128, or the prepared shards' length", ge=8)
    vocab: Optional[str] = _f(None, "text_classification: WordPiece vocab.txt, or the Hugging Face folder holding it")
    lower_case: Optional[bool] = _f(None, "text_classification: lower-case, strip accents; null: the vocab folder's "
                                          "tokenizer_config.json, else true")
    text_column: str = _f("text", "text/token_classification: column with the text, or (token) the list of "
                                  "words; data.path: a folder with train.* and dev.* CSV/TSV/JSONL, or one file")
    text_pair_column: Optional[str] = _f("text_pair", "text_classification: second text of a pair, used when "
                                                      "the file has this column")
    label_column: str = _f("label", "text/token_classification: label column (integers or names; token: "
                                    "a list, one per word)")


@dataclasses.dataclass
class TrainConfig:
    epochs: int = _f(10, "training epochs", ge=1)
    batch_size: int = _f(32, "batch size per device", ge=1)
    optimizer: str = _f("sgd", "optimizer", registry=OPTIMIZERS)
    lr: float = _f(0.1, "peak learning rate", gt=0.0)
    scale_lr: bool = _f(False, "scale lr linearly by global_batch / base_batch_size")
    base_batch_size: int = _f(256, "reference batch size for scale_lr", ge=1)
    momentum: float = _f(0.9, "SGD momentum", ge=0.0, lt=1.0)
    nesterov: bool = _f(False, "Nesterov momentum (SGD)")
    betas: List[float] = _f([0.9, 0.999], "AdamW/LAMB betas")
    eps: float = _f(1e-8, "AdamW/LAMB epsilon", gt=0.0)
    weight_decay: float = _f(1e-4, "weight decay", ge=0.0)
    no_decay_bn_bias: bool = _f(True, "exclude BatchNorm/LayerNorm parameters and biases from weight decay")
    schedule: str = _f("cosine", "lr schedule (per step)", registry=SCHEDULES)
    warmup_epochs: float = _f(0.0, "linear warmup length in epochs", ge=0.0)
    warmup_start_factor: float = _f(0.01, "warmup starts at lr * this", gt=0.0, le=1.0)
    min_lr: float = _f(0.0, "final lr for cosine/poly", ge=0.0)
    step_epochs: int = _f(30, "step schedule: decay every this many epochs", ge=1)
    milestones: List[int] = _f([30, 60, 80], "multistep schedule: epochs at which lr decays")
    gamma: float = _f(0.1, "step/multistep decay factor", gt=0.0, le=1.0)
    power: float = _f(1.0, "poly schedule power", gt=0.0)
    label_smoothing: float = _f(0.0, "label smoothing", ge=0.0, lt=1.0)
    amp_level: Literal["O0", "O1", "O2", "O3"] = _f("O0", "mixed precision level (CPU runs O0)")
    loss_scale: Literal["none", "fixed", "dynamic"] = _f("none", "loss scaling for AMP")
    loss_scale_value: float = _f(1024.0, "fixed scale, or the initial dynamic scale", gt=0.0)
    accumulation_steps: int = _f(1, "micro-batches per optimizer step", ge=1)
    clip_grad_norm: Optional[float] = _f(None, "clip gradients to this global norm", gt=0.0)
    ema_decay: Optional[float] = _f(None, "EMA of weights with this decay; eval uses the EMA", gt=0.0, lt=1.0)
    seed: int = _f(42, "seed for weights, data order and augmentation", ge=0)
    log_every_steps: int = _f(10, "progress line every N steps when not on a terminal", ge=1)


@dataclasses.dataclass
class EvalConfig:
    every_epochs: int = _f(1, "evaluate every N epochs (0 = only at the end)", ge=0)
    batch_size: Optional[int] = _f(None, "eval batch size (null: train.batch_size)", ge=1)


@dataclasses.dataclass
class CheckpointConfig:
    every_n_steps: int = _f(0, "also save every N optimizer steps (0 = at epoch end only)", ge=0)
    keep_last: int = _f(3, "keep the newest K step/epoch checkpoints (and always the newest one every rank saved)",
                        ge=1)
    async_save: bool = _f(False, "write checkpoints in a background thread (the step waits only for a host copy)")
    keep_best: bool = _f(True, "keep best.ckpt for the monitored metric")
    monitor: Optional[str] = _f(None, "metric that decides best.ckpt (higher is better); null: the task's own "
                                      "(top1 for images, accuracy for text, mlm_accuracy for BERT pretraining)")


@dataclasses.dataclass
class RuntimeConfig:
    device: Literal["auto", "Ascend", "GPU", "CPU"] = _f("auto", "device; auto: Ascend, then GPU, then CPU")
    device_id: int = _f(0, "device index on the node (standalone runs)", ge=0)
    mode: Literal["graph", "pynative"] = _f("graph", "MindSpore execution mode")
    compile_cache: bool = _f(True, "reuse compiled graphs across launches")
    cache_dir: Optional[str] = _f(None, "compile cache folder (null: $MS_SUITE_CACHE or ~/.cache/ms_suite)")
    num_threads: Optional[int] = _f(None, "CPU intra-op threads (null: MindSpore default)", ge=1)
    dispatch_threads: Optional[int] = _f(None, "runtime threads that launch kernels (null: MindSpore default, 5)",
                                         ge=1)
    cpu_affinity: bool = _f(False, "bind MindSpore's threads to this process's cores (mindspore.runtime."
                                   "set_cpu_affinity)")
    jit_level: Optional[Literal["O0", "O1", "O2"]] = _f(None, "graph compile level (null: MindSpore's default; "
                                                              "O2 is Ascend-only)")
    graph_kernel: bool = _f(False, "graph mode: fuse element-wise and reduction ops with AKG (CPU needs the "
                                   "`decorator` package)")
    peak_tflops: Optional[float] = _f(None, "device peak TFLOPS for MFU (null: known-device table, or a CPU "
                                            "estimate from /proc/cpuinfo)", gt=0.0)


@dataclasses.dataclass
class SummaryConfig:
    enabled: bool = _f(False, "write MindInsight summaries (loss, lr, throughput, eval metrics, graph) to the run dir")
    every_n_steps: int = _f(10, "record scalars every N optimizer steps (averaged over them) and at epoch ends", ge=1)
    histograms: bool = _f(False, "also record weight histograms at those steps (costly for big models)")
    all_ranks: bool = _f(False, "distributed: every rank writes (rank k > 0 into <run>/rank_<k>/); default rank 0")


@dataclasses.dataclass
class ProfileConfig:
    enabled: bool = _f(False, "profile steps start_step..stop_step with MindSpore's profiler into <run>/profiler/")
    start_step: int = _f(10, "first profiled optimizer step (1-based; leave step 1 out, it compiles)", ge=1)
    stop_step: int = _f(20, "last profiled optimizer step (inclusive)", ge=1)


@dataclasses.dataclass
class ParallelConfig:
    mode: Literal["standalone", "data_parallel", "semi_auto_parallel", "auto_parallel"] = _f(
        "standalone", "standalone; data_parallel under msrun; semi_auto/auto_parallel need Ascend or GPU")
    data_parallel: int = _f(1, "semi-auto parallel: data-parallel degree", ge=1)
    model_parallel: int = _f(1, "semi-auto parallel: tensor (model) parallel degree", ge=1)
    pipeline_stage: int = _f(1, "semi-auto parallel: pipeline stages", ge=1)
    micro_batch_num: int = _f(1, "pipeline micro-batches per step", ge=1)
    optimizer_shard: bool = _f(False, "shard optimizer state across data-parallel ranks")
    recompute: bool = _f(False, "recompute activations in backward to save memory")
    grad_reduce_dtype: Literal["float32", "float16", "bfloat16"] = _f(
        "float32", "data parallel: dtype the gradients are all-reduced in (cast back after); float16 halves the "
                   "bytes, bfloat16 needs Ascend or GPU")
    grad_buckets: Optional[int] = _f(None, "data parallel: pack the gradients into this many flat all-reduce "
                                           "buffers (0: one per gradient); null: MindSpore's DistributedGradReducer",
                                     ge=0)


@dataclasses.dataclass
class ExportConfig:
    format: Literal["MINDIR", "AIR", "ONNX"] = _f("MINDIR", "export file format")
    batch_size: int = _f(1, "batch size of the exported input", ge=1)


@dataclasses.dataclass
class TuneConfig:
    metric: str = _f("top1", "eval metric each trial reports per epoch (for pruning) and returns at its end")
    direction: Literal["maximize", "minimize"] = _f("maximize", "maximize (accuracy) or minimize (loss)")
    trials: int = _f(20, "trials the study should finish (interrupted ones do not count); --trials overrides", ge=1)
    sampler: Literal["tpe", "random", "grid"] = _f(
        "tpe", "tpe (Bayesian), random, or grid (every combination; needs categorical entries)")
    seed: int = _f(0, "sampler seed", ge=0)
    startup_trials: int = _f(5, "random trials before TPE models the space; finished ones before median pruning",
                             ge=0)
    pruner: Literal["median", "halving", "none"] = _f(
        "median", "stop poor trials early: below the median at the same epoch, successive halving, or none")
    min_epochs: int = _f(1, "epochs a trial trains before it can be pruned", ge=1)
    reduction_factor: int = _f(3, "successive halving: keep the best 1/this of trials at each rung", ge=2)


@dataclasses.dataclass
class SimQATConfig:
    per_channel: bool = _f(True, "one weight range per output channel (activations: one range per tensor)")
    symmetric: bool = _f(True, "symmetric weight ranges (activations stay asymmetric)")
    narrow_range: bool = _f(False, "weights use [-127, 127] instead of [-128, 127]")


@dataclasses.dataclass
class SLBConfig:
    weight_bits: Literal[1, 2, 4] = _f(4, "bits per convolution weight")
    enable_act_quant: bool = _f(False, "also fake-quantize activations to INT8 (GPU only)")
    t_start_val: float = _f(1.0, "initial softmax temperature", gt=0.0)
    t_start_time: float = _f(0.2, "fraction of the epochs after which the temperature starts rising", ge=0.0, le=1.0)
    t_end_time: float = _f(0.6, "fraction of the epochs after which it stops (weights become one-hot)",
                           ge=0.0, le=1.0)
    t_factor: float = _f(1.2, "temperature multiplier per epoch while rising", gt=0.0)


@dataclasses.dataclass
class ScopConfig:
    prune_rate: float = _f(0.45, "fraction of each block's inner-convolution channels removed", ge=0.0, lt=1.0)
    knockoff_epochs: int = _f(1, "epochs of the knockoff stage that scores channels (train.epochs fine-tune)",
                              ge=1)


@dataclasses.dataclass
class UniPrunerConfig:
    target_sparsity: float = _f(0.55, "Golden Stick's target: prune until the prunable layers keep at most this "
                                      "fraction of their parameters", gt=0.0, lt=1.0)
    frequency: int = _f(1, "zero the least important channel groups every N epochs (and after the last)", ge=1)
    pruning_step: int = _f(8, "channels zeroed/pruned together as one group", ge=1)
    filter_lower_threshold: int = _f(8, "a layer is never pruned below this many channels", ge=1)


@dataclasses.dataclass
class DistillConfig:
    teacher_config: Optional[str] = _f(None, "recipe of the teacher model, e.g. configs/quickstart.yaml")
    teacher_checkpoint: Optional[str] = _f(None, "trained teacher weights (`compress --pretrained` sets it)")
    temperature: float = _f(4.0, "softmax temperature of the KL term", gt=0.0)
    alpha: float = _f(0.5, "weight of the KL term; cross-entropy gets 1 - alpha", ge=0.0, le=1.0)


@dataclasses.dataclass
class CompressionConfig:
    algorithm: Optional[str] = _f(None, "`ms-suite compress`: the algorithm; its own section below holds its "
                                        "settings", registry=COMPRESSION)
    simqat: SimQATConfig = dataclasses.field(default_factory=SimQATConfig)
    slb: SLBConfig = dataclasses.field(default_factory=SLBConfig)
    scop: ScopConfig = dataclasses.field(default_factory=ScopConfig)
    unipruner: UniPrunerConfig = dataclasses.field(default_factory=UniPrunerConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)


@dataclasses.dataclass
class Config:
    base: List[str] = _f([], "recipes merged in order before this file")
    description: str = _f("", "one line about this recipe")
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    parallel: ParallelConfig = dataclasses.field(default_factory=ParallelConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    summary: SummaryConfig = dataclasses.field(default_factory=SummaryConfig)
    profile: ProfileConfig = dataclasses.field(default_factory=ProfileConfig)
    search_space: Dict[str, Any] = _f({}, "`ms-suite tune`: {dotted.key: {type: float|int|categorical, low, high, "
                                          "log, step | choices}}")
    tune: TuneConfig = dataclasses.field(default_factory=TuneConfig)
    compression: CompressionConfig = dataclasses.field(default_factory=CompressionConfig)
