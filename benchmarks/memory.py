"""Peak memory: the peak resident set size of every CLI job on the embedded/generated data.

Each job is a fresh ``python -m ms_suite ...`` process; its peak RSS is the kernel's own accounting
of that process (``os.wait4`` rusage ``ru_maxrss``, what ``/usr/bin/time -v`` prints as "Maximum
resident set size"). Jobs, in order: train the quickstart, eval and export its checkpoint, each
compression algorithm from it (SimQAT, SLB, SCOP, UniPruner, distillation), a 3-trial tune, and
BERT-Tiny pretraining then fine-tuning on generated text. A watchdog kills a job whose RSS passes
``--kill-above-gb`` (the machine is shared) and reports it as killed.

    .venv/bin/python benchmarks/memory.py [--only train,eval,...] [--set KEY=VALUE ...] [--quick]

``--set`` overrides go to every ResNet job (e.g. ``model.kwargs.base_width=32 train.epochs=2`` for
a reduced run); ``--quick`` uses width 8, one epoch and PyNative mode.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence

from common import QUICK_RESNET, ROOT, LoadWatch, finish, parse_args, progress, target

sys.path.insert(0, os.path.join(ROOT, "tests"))
from bert_fixtures import write_classification, write_corpus, write_vocab  # noqa: E402

TARGET_GB = 3.0
QUICKSTART = "configs/quickstart.yaml"
ALGORITHMS = ("simqat", "slb", "scop", "unipruner", "distill")
JOBS = ("train", "eval", "export", *ALGORITHMS, "tune", "bert_pretrain", "bert_finetune")


def add_arguments(parser) -> None:
    parser.add_argument("--only", help=f"comma-separated jobs out of {','.join(JOBS)} (train always runs "
                                       "when a later ResNet job needs its checkpoint)")
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="overrides for every ResNet job")
    parser.add_argument("--kill-above-gb", type=float, default=6.0, help="watchdog limit per job (default 6)")


class Job:
    """One CLI invocation measured as a fresh process."""

    def __init__(self, name: str, args: Sequence[str]):
        self.name, self.args = name, list(args)
        self.peak_gb: Optional[float] = None
        self.seconds = 0.0
        self.status = "not run"

    def run(self, limit_gb: float, workdir: str) -> None:
        progress(f"{self.name}: ms-suite {' '.join(self.args)}")
        log = open(os.path.join(workdir, f"{self.name}.log"), "w")
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "ms_suite", *self.args], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT)
        killed = threading.Event()
        threading.Thread(target=_watch, args=(proc.pid, limit_gb, killed), daemon=True).start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.close()
        self.seconds = time.perf_counter() - start
        self.peak_gb = usage.ru_maxrss / 2 ** 20  # KiB on Linux
        self.status = (f"killed above {limit_gb} GB" if killed.is_set() else
                       "ok" if proc.returncode == 0 else f"exit {proc.returncode} (see {log.name})")


def _rss_gb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            line = next(line for line in fh if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0.0
    return int(line.split()[1]) / 2 ** 20


def _watch(pid: int, limit_gb: float, killed: threading.Event) -> None:
    while os.path.exists(f"/proc/{pid}"):
        if _rss_gb(pid) > limit_gb:
            killed.set()
            os.kill(pid, 9)
            return
        time.sleep(0.2)


def plan(workdir: str, overrides: List[str], only: Optional[set]) -> List[Job]:
    """The jobs to run, in dependency order."""
    float_dir = os.path.join(workdir, "float")
    ckpt = os.path.join(float_dir, "checkpoints", "best.ckpt")
    resnet = ["--set", *overrides] if overrides else []
    jobs = [Job("train", ["train", "-c", QUICKSTART, "--output-dir", float_dir, *resnet]),
            Job("eval", ["eval", "-c", QUICKSTART, "--checkpoint", ckpt, *resnet]),
            Job("export", ["export", "-c", QUICKSTART, "--checkpoint", ckpt, "--output",
                           os.path.join(workdir, "quickstart.mindir"), *resnet])]
    teacher_overrides = [f"compression.distill.teacher_config={teacher_recipe(workdir, overrides)}"]
    for name in ALGORITHMS:
        extra = teacher_overrides if name == "distill" else []
        args = ["compress", "-c", f"configs/compress/resnet18_digits_{name}.yaml", "--pretrained", ckpt,
                "--output-dir", os.path.join(workdir, name)]
        jobs.append(Job(name, args + (["--set", *overrides, *extra] if overrides or extra else [])))
    jobs.append(Job("tune", ["tune", "-c", "configs/tune/resnet18_digits_lr_wd.yaml", "--trials", "3",
                             "--output-dir", os.path.join(workdir, "tune"), *resnet]))
    wanted = only or set(JOBS)
    if wanted & {"bert_pretrain", "bert_finetune"}:
        wanted.add("bert_pretrain")
        jobs += bert_jobs(workdir)
    if wanted & {"eval", "export", *ALGORITHMS}:
        wanted.add("train")
    return [job for job in jobs if job.name in wanted]


def teacher_recipe(workdir: str, overrides: List[str]) -> str:
    """The distillation teacher's recipe: the quickstart with the model overrides the float run got."""
    path = os.path.join(workdir, "teacher.yaml")
    model = [o.split("=", 1) for o in overrides if o.startswith("model.kwargs.")]
    with open(path, "w") as fh:
        fh.write(f"base: [{os.path.join(ROOT, QUICKSTART)}]\n")
        if model:
            kwargs = ", ".join(f"{key[len('model.kwargs.'):]}: {value}" for key, value in model)
            fh.write(f"model: {{kwargs: {{{kwargs}}}}}\n")
    return path


def bert_jobs(workdir: str) -> List[Job]:
    """BERT-Tiny pretraining on a generated corpus, then fine-tuning from it on generated sentiment."""
    data = os.path.join(workdir, "bert")
    os.makedirs(data, exist_ok=True)
    corpus, vocab = write_corpus(os.path.join(data, "corpus.txt")), write_vocab(os.path.join(data, "vocab.txt"))
    subprocess.run([sys.executable, "-m", "ms_suite", "prepare-data", "bert", "--input", corpus, "--vocab", vocab,
                    "--seq-len", "32", "--dupe-factor", "3", "--eval-fraction", "0.2", "--output",
                    os.path.join(data, "shards")], cwd=ROOT, check=True, capture_output=True)
    sentiment = write_classification(os.path.join(data, "sentiment"), "jsonl", train=128, eval_=48)
    pretrain_dir = os.path.join(workdir, "bert_pretrain")
    return [Job("bert_pretrain", ["train", "-c", "configs/bert/bert_tiny_pretrain.yaml", "--output-dir", pretrain_dir,
                                  "--set", f"data.path={os.path.join(data, 'shards')}", "train.epochs=3"]),
            Job("bert_finetune", ["train", "-c", "configs/bert/bert_tiny_finetune_cls.yaml", "--output-dir",
                                  os.path.join(workdir, "bert_finetune"), "--set", f"data.path={sentiment}",
                                  f"data.vocab={os.path.join(data, 'shards')}", "data.seq_len=16", "train.epochs=4",
                                  f"model.pretrained={os.path.join(pretrain_dir, 'checkpoints', 'best.ckpt')}"])]


def main() -> None:
    args = parse_args(__doc__, add_arguments)
    overrides = [*(QUICK_RESNET + ["train.epochs=1"] if args.quick else []), *args.overrides]
    only = set(args.only.split(",")) if args.only else None
    unknown = (only or set()) - set(JOBS)
    if unknown:
        sys.exit(f"--only: unknown job(s) {', '.join(sorted(unknown))}; choose from {', '.join(JOBS)}")
    load = LoadWatch(args.wait_quiet)
    with tempfile.TemporaryDirectory(prefix="ms_suite_memory_") as workdir:
        jobs = plan(workdir, overrides, only)
        for job in jobs:
            load.run(job.name, lambda job=job: job.run(args.kill_above_gb, workdir))
    measured = [job for job in jobs if job.peak_gb is not None]
    worst = max(measured, key=lambda job: job.peak_gb)
    rows = [(job.name, f"{job.peak_gb:.2f}", f"{job.seconds:.0f}", job.status) for job in jobs]
    result: Dict[str, object] = {"benchmark": "memory", "quick": args.quick, "overrides": overrides,
                                 "peak_gb": {job.name: round(job.peak_gb, 3) for job in measured},
                                 "status": {job.name: job.status for job in jobs}, "worst": worst.name,
                                 **target(worst.peak_gb, TARGET_GB, key="worst_peak_gb", at_most=True)}
    finish("Peak RSS per CLI job (fresh process each)", ["job", "peak RSS GB", "wall s", "status"], rows, result,
           load, notes=[f"target: every job <= {TARGET_GB} GB"])


if __name__ == "__main__":
    main()
