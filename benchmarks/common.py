"""What every benchmark script shares: arguments, the quiet-machine check, timing, fresh worker
processes, fake datasets, the table and the closing JSON line.

Each script prints a table and, as its very last stdout line, one JSON object with its figures
(``ratio`` or ``efficiency`` plus ``target`` and ``met`` where the suite has a target). Progress
goes to stderr. ``--quick`` runs tiny settings that only prove the script works.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, ROOT)

from ms_suite.cli.table import format_table  # noqa: E402

QUIET_BUSY = 0.2  # cores other processes may keep busy during a measurement for it to count as quiet
# /proc/stat counts in 10 ms ticks per core, so the load of a window of tens of milliseconds is noise
# (2.5 "busy cores" on an idle 2-core machine); shorter measurements are judged together.
MIN_LOAD_WINDOW_S = 1.0
# --quick: PyNative mode skips graph compilation and ResNets are narrow, so every script ends in seconds.
QUICK_SETTINGS = ["runtime.mode=pynative"]
QUICK_RESNET = ["runtime.mode=pynative", "model.kwargs.base_width=8"]
PYTHON = sys.executable


# --------------------------------------------------------------------------- arguments and output


def parse_args(doc: str, extra: Optional[Callable[[argparse.ArgumentParser], None]] = None) -> argparse.Namespace:
    """``--quick`` (tiny settings, figures meaningless) plus the script's own options."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                     epilog="\n".join(doc.strip().splitlines()[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny models and few steps: checks the script runs, the figures mean nothing")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each measurement wait up to this long for other processes to go idle")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def finish(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], result: Dict[str, Any],
           load: "LoadWatch", notes: Sequence[str] = ()) -> None:
    """Print the table and notes, then the JSON line (always last)."""
    result = {**result, **load.summary(), "machine": machine()}
    print(f"{title}\n")
    print(format_table(headers, rows))
    for note in notes:
        print(f"  {note}")
    if not result["quiet"]:
        print(f"  WARNING: other processes kept up to {result['others_cores_max']} cores busy during a "
              f"measurement (quiet: < {QUIET_BUSY}); these timings are not trustworthy")
    print(json.dumps(result, default=str), flush=True)


def target(value: float, goal: float, key: str = "ratio", at_most: bool = False) -> Dict[str, Any]:
    """``{key: value, "target": goal, "met": ...}`` (``at_most``: lower is better)."""
    met = value <= goal if at_most else value >= goal
    return {key: round(value, 4), "target": goal, "met": bool(met)}


# --------------------------------------------------------------------------- machine and load


def busy_seconds() -> float:
    """CPU-seconds all cores have spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def own_cpu_seconds() -> float:
    """CPU-seconds of this process (all threads) and of its finished children (workers, msrun ranks)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class LoadWatch:
    """Measures how many cores *other* processes kept busy during each measurement (all busy CPU
    time minus this script's and its workers'), so a figure taken beside other work is flagged.
    With ``wait`` > 0 it first waits up to that many seconds for the machine to go quiet.
    Measurements shorter than ``MIN_LOAD_WINDOW_S`` are pooled until they add up to that long."""

    def __init__(self, wait: float = 0.0) -> None:
        self.wait = wait
        self.others: List[float] = []
        self._pooled = [0.0, 0.0]  # other processes' CPU-seconds and wall seconds of short measurements

    def run(self, label: str, measure: Callable[[], Any]) -> Any:
        """``measure()``, noting the cores other processes used meanwhile."""
        self._wait_for_quiet(label)
        wall, busy, own = time.perf_counter(), busy_seconds(), own_cpu_seconds()
        value = measure()
        self._pooled[0] += (busy_seconds() - busy) - (own_cpu_seconds() - own)
        self._pooled[1] += time.perf_counter() - wall
        if self._pooled[1] >= MIN_LOAD_WINDOW_S:
            self._note(f"during {label}", self._pooled[0] / self._pooled[1])
            self._pooled = [0.0, 0.0]
        return value

    def check(self, label: str) -> None:
        """Note how busy the machine is for one second right now (call it while this script idles)."""
        self._wait_for_quiet(label)
        busy = busy_seconds()
        time.sleep(1.0)
        self._note(f"before {label}", busy_seconds() - busy)

    def _note(self, when: str, others: float) -> None:
        self.others.append(max(others, 0.0))
        if others >= QUIET_BUSY:
            progress(f"  (other processes kept {others:.2f} cores busy {when}: not quiet)")

    def _wait_for_quiet(self, label: str) -> None:
        start = time.monotonic()
        while time.monotonic() < start + self.wait:
            busy = busy_seconds()
            time.sleep(2.0)
            if (busy_seconds() - busy) / 2.0 < QUIET_BUSY:
                break
        if time.monotonic() - start > 2.5:
            progress(f"  waited {time.monotonic() - start:.0f} s for a quiet machine before {label}")

    def summary(self) -> Dict[str, Any]:
        worst = max(self.others) if self.others else 0.0
        return {"others_cores_max": round(worst, 3), "quiet": worst < QUIET_BUSY}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> Dict[str, Any]:
    return {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "mindspore": _version("mindspore"), "torch": _version("torch")}


# --------------------------------------------------------------------------- timing


def timed_calls(fn: Callable[[], Any], steps: int, warmup: int = 1) -> List[float]:
    """Seconds per call of ``fn`` (which must block until its work is done), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def alternate(runs: Dict[str, Callable[[], float]], rounds: int, load: LoadWatch) -> Dict[str, List[float]]:
    """Call each run in turn (A B A B ...) ``rounds`` times; the values each returned, per run."""
    results: Dict[str, List[float]] = {name: [] for name in runs}
    for r in range(rounds):
        for name, run in runs.items():
            progress(f"round {r + 1}/{rounds}: {name} ...")
            results[name].append(load.run(name, run))
    return results


# --------------------------------------------------------------------------- fresh processes


def run_json(cmd: Sequence[str], timeout: float = 3600) -> Dict[str, Any]:
    """Run ``cmd`` from the repository root and return the JSON object on its last stdout line."""
    proc = subprocess.run(list(cmd), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


VENV_BIN = os.path.join(ROOT, ".venv", "bin")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def msrun_summary(workers: int, recipe: str, overrides: Sequence[str], workdir: str) -> Dict[str, Any]:
    """``ms-suite train`` under msrun with worker i pinned to core i; rank 0's summary.json.

    Pinned, because one MindSpore 2.7 worker always runs an actor and a kernel thread that split
    every CPU op, and unpinned it takes both cores of this machine by itself.
    """
    out = tempfile.mkdtemp(dir=workdir)
    cmd = [os.path.join(VENV_BIN, "msrun"), f"--worker_num={workers}", f"--local_worker_num={workers}",
           "--bind_core=" + json.dumps({f"device{rank}": [str(rank)] for rank in range(workers)}),
           f"--master_port={free_port()}", f"--log_dir={os.path.join(out, 'msrun_logs')}", "--join=True",
           "python", "-m", "ms_suite", "train", "-c", recipe, "--output-dir", out, "--set", *overrides]
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "MS_SUITE_CACHE": os.path.join(workdir, "cache")}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    summary = os.path.join(out, "summary.json")
    if proc.returncode != 0 or not os.path.isfile(summary):
        logs = os.path.join(out, "msrun_logs")
        tails = "".join(open(os.path.join(logs, f)).read()[-1500:] for f in sorted(os.listdir(logs))
                        if f.endswith(".log")) if os.path.isdir(logs) else ""
        raise RuntimeError(f"msrun with {workers} worker(s) failed ({proc.returncode}):\n{proc.stderr[-1500:]}{tails}")
    with open(summary) as fh:
        return json.load(fh)


def worker(script: str, *args: str) -> List[str]:
    """The command line of a benchmark helper run in its own process."""
    return [PYTHON, os.path.join(BENCH_DIR, script), *args]


def print_json(obj: Dict[str, Any]) -> None:
    """A worker's answer to its parent: one JSON line."""
    print(json.dumps(obj), flush=True)


# --------------------------------------------------------------------------- data


CIFAR_RECORD = 1 + 32 * 32 * 3


def fake_cifar10(root: str, train_records: int = 10000, test_records: int = 10000, seed: int = 0) -> str:
    """Random CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin) in ``root``.

    MindSpore's Cifar10Dataset reads only files of exactly 10,000 records, so keep the default
    for the train split when the native reader is what is measured.
    """
    rng = np.random.default_rng(seed)
    files = {f"data_batch_{i}.bin": train_records for i in range(1, 6)}
    files["test_batch.bin"] = test_records
    os.makedirs(root, exist_ok=True)
    for name, records in files.items():
        data = rng.integers(0, 256, size=(records, CIFAR_RECORD), dtype=np.uint8)
        data[:, 0] %= 10
        data.tofile(os.path.join(root, name))
    return root


def fake_imagefolder(root: str, images: int, classes: int = 4, size: tuple = (500, 375), seed: int = 0) -> str:
    """``train/<class>/*.JPEG`` and ``val/<class>/*.JPEG`` of smooth random pictures (ImageNet's
    typical 500x375, quality 90), so decoding costs what a real photo costs."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    for split, count in (("train", images), ("val", max(classes, images // 8))):
        for i in range(count):
            folder = os.path.join(root, split, f"class{i % classes}")
            os.makedirs(folder, exist_ok=True)
            coarse = rng.integers(0, 256, size=(height // 25 + 1, width // 25 + 1, 3), dtype=np.uint8)
            picture = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
            noise = rng.integers(-12, 13, size=(height, width, 3))
            pixels = np.clip(np.asarray(picture, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"img{i:05d}.JPEG"), quality=90)
    return root


# --------------------------------------------------------------------------- trainer runs


def stop_after(steps: int):
    """A trainer callback that ends training after ``steps`` optimizer steps and records the wall
    clock at every step's end (``.times``), so throughput includes the loop's own overhead."""
    from ms_suite.engine.callbacks import Callback

    class StopAfter(Callback):
        def __init__(self) -> None:
            self.times: List[float] = []

        def on_step_end(self, state) -> None:
            self.times.append(time.perf_counter())
            if state.step >= steps:
                state.stop = True

        def samples_per_s(self, batch: int) -> float:
            """From the end of step 1 (compiled) to the end of the last step."""
            return batch * (len(self.times) - 1) / (self.times[-1] - self.times[0])

    return StopAfter()
