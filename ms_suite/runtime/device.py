"""Device choice and MindSpore context: device, mode, seeds, threads and the compile cache."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import logging
import os
import random
import re
import tempfile
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np

from ms_suite.config.schema import RuntimeConfig
from ms_suite.errors import UserError

log = logging.getLogger("ms_suite")

DEVICE_ORDER = ("Ascend", "GPU", "CPU")
_MISSING_HINT = {
    "Ascend": "install CANN and source its set_env.sh (e.g. /usr/local/Ascend/ascend-toolkit/set_env.sh)",
    "GPU": "install CUDA 11.x/cuDNN and check LD_LIBRARY_PATH and `nvidia-smi`",
    "CPU": "reinstall mindspore",
}


@dataclasses.dataclass
class RuntimeInfo:
    device: str
    reason: str
    mode: str
    cache_dir: Optional[str]


@contextlib.contextmanager
def captured_native_output() -> Iterator[list]:
    """Capture what MindSpore writes to the process's stdout/stderr file descriptors (its C++ side,
    e.g. plugin load messages, and its ``[ERROR] ME(...)`` log lines) as a list of stripped lines."""
    lines: list = []
    with tempfile.TemporaryFile(mode="w+") as tmp:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            yield lines
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            lines.extend(line.strip() for line in tmp if line.strip())


def probe_device(name: str) -> Tuple[bool, str]:
    """Whether MindSpore can load ``name`` here, and a short reason when it cannot."""
    from mindspore import hal

    with captured_native_output() as lines:
        try:
            ok = bool(hal.is_available(name))
        except Exception as err:  # plugin loaders raise assorted errors
            ok, lines = False, [str(err)]
    if ok:
        return True, f"{name} is available"
    missing = sorted({m.group(1) for line in lines for m in re.finditer(r"(\S+\.so[.\d]*): cannot open", line)})
    detail = f" (missing {', '.join(missing)})" if missing else ""
    return False, f"{name} not available{detail}"


def select_device(requested: str) -> Tuple[str, str]:
    """Resolve ``auto`` to the first usable device; check an explicit choice. Returns (device, why)."""
    if requested != "auto":
        ok, why = probe_device(requested)
        if not ok:
            raise UserError(f"runtime.device={requested} but MindSpore cannot use it here: {why}; "
                            f"{_MISSING_HINT[requested]}, or set runtime.device=auto")
        return requested, f"requested {requested}"
    skipped = []
    for name in DEVICE_ORDER:
        ok, why = probe_device(name)
        if ok:
            reason = f"auto: {why}" + (f"; skipped {'; '.join(skipped)}" if skipped else "")
            return name, reason
        skipped.append(why)
    raise UserError("no usable MindSpore device (" + "; ".join(skipped) + ")")


def default_cache_dir() -> str:
    return os.environ.get("MS_SUITE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "ms_suite"))


def seed_everything(seed: int) -> None:
    import mindspore as ms

    random.seed(seed)
    np.random.seed(seed)
    ms.set_seed(seed)


def _set_device(device: str, device_id: int) -> None:
    """``mindspore.set_device``, tolerating a process that already ran kernels on ``device``.

    MindSpore refuses set_device once a kernel has executed (e.g. a second run in one process:
    tuning trials, compression stages, tests); running on the same device is then fine.
    """
    import mindspore as ms

    try:
        ms.set_device(device, device_id)
    except RuntimeError as err:
        if "has been initialized" not in str(err) or ms.get_context("device_target") != device:
            raise UserError(f"this process already runs MindSpore on {ms.get_context('device_target')}; "
                            f"start a new process for runtime.device={device}") from None


def init_runtime(cfg: RuntimeConfig, seed: int, device_id: Optional[int] = None) -> RuntimeInfo:
    """Set up MindSpore for this process: device, execution mode, threads, compile cache, seeds."""
    import mindspore as ms

    device, reason = select_device(cfg.device)
    _set_device(device, cfg.device_id if device_id is None else device_id)
    ms.set_context(mode=ms.GRAPH_MODE if cfg.mode == "graph" else ms.PYNATIVE_MODE)
    apply_performance_settings(cfg, device)
    seed_everything(seed)
    log.info("device %s (%s), %s mode", device, reason, cfg.mode)
    return RuntimeInfo(device=device, reason=reason, mode=cfg.mode, cache_dir=None)


# Process-wide MindSpore settings that raise when set a second time, and the values they got.
_APPLIED: Dict[str, object] = {}


def _set_once(name: str, value: object, setter: Callable[[], None]) -> None:
    """Apply a process-wide setting once; a later run in the same process keeps the first value."""
    if name not in _APPLIED:
        setter()
        _APPLIED[name] = value
    elif _APPLIED[name] != value:
        log.warning("runtime.%s=%s ignored: MindSpore keeps %s for the rest of this process",
                    name, value, _APPLIED[name])


def apply_performance_settings(cfg: RuntimeConfig, device: str) -> None:
    """Threads, core binding, compile level and graph kernel fusion (benchmarks/vs_pytorch.py
    measures each on CPU)."""
    import mindspore as ms

    if cfg.num_threads and device == "CPU":
        _set_once("num_threads", cfg.num_threads,
                  lambda: ms.device_context.cpu.op_tuning.threads_num(cfg.num_threads))
    if cfg.dispatch_threads:
        _set_once("dispatch_threads", cfg.dispatch_threads,
                  lambda: ms.runtime.dispatch_threads_num(cfg.dispatch_threads))
    if cfg.cpu_affinity:
        _set_once("cpu_affinity", True, lambda: ms.runtime.set_cpu_affinity(True))
    if cfg.jit_level:
        if cfg.jit_level == "O2" and device != "Ascend":
            raise UserError(f"runtime.jit_level=O2 compiles with the GE backend, which needs Ascend (device is "
                            f"{device}); use O0 or O1")
        ms.set_context(jit_config={"jit_level": cfg.jit_level})
    if cfg.graph_kernel:
        _enable_graph_kernel(cfg, device)


def graph_kernel_missing(device: str) -> Optional[str]:
    """Why ``runtime.graph_kernel=true`` cannot compile on ``device`` here, or None when it can."""
    if device == "CPU" and importlib.util.find_spec("decorator") is None:
        return ("runtime.graph_kernel=true on CPU compiles kernels with AKG, which needs the `decorator` "
                "package: pip install decorator")
    return None


def _enable_graph_kernel(cfg: RuntimeConfig, device: str) -> None:
    """Graph kernel fusion at the level ``enable_graph_kernel=True`` means (opt_level 2). That
    context key is deprecated and jit_level O1 does not fuse on CPU, so set the flags MindSpore
    reads at each compile; an ``opt_level`` the user already exported wins."""
    if cfg.mode != "graph":
        raise UserError("runtime.graph_kernel=true needs runtime.mode=graph")
    missing = graph_kernel_missing(device)
    if missing:
        raise UserError(f"{missing} (or set runtime.graph_kernel=false)")
    flags = os.environ.get("MS_DEV_GRAPH_KERNEL_FLAGS", "")
    if "opt_level" not in flags:
        os.environ["MS_DEV_GRAPH_KERNEL_FLAGS"] = f"{flags} --opt_level=2".strip()


_CACHE_ENV = ("MS_COMPILER_CACHE_ENABLE", "MS_COMPILER_CACHE_PATH")


def _give_mindspore_an_entry_script(cache_dir: str) -> None:
    """MindSpore's compile cache parses the entry script (``sys.argv[0]``, read at ``import mindspore``)
    for the sources it hashes, and fails opening it when there is no such file: under ``python -c``
    (as pytest-xdist workers run) or a host that sets ``argv[0]`` to its own name. The cache folder is
    already keyed on the code that builds the graph, so an empty stand-in script keeps that check
    constant instead."""
    from mindspore.common import api

    if api.entry_script_path is not None and not os.path.isfile(api.entry_script_path):
        stand_in = os.path.join(cache_dir, "entry_script.py")
        open(stand_in, "a").close()
        api.entry_script_path = stand_in


@contextlib.contextmanager
def compile_cache(info: RuntimeInfo, cfg: RuntimeConfig, fingerprint: str) -> Iterator[Optional[str]]:
    """MindSpore's compile cache, on for the ``with`` block in a folder keyed by ``fingerprint``.

    MindSpore 2.7's cache does not notice every change that alters a graph (a cached graph kept
    the learning-rate table of a shorter run and failed with an out-of-range Gather; another kept
    the train step of an older ms-suite, another the optimizer state of a model with more classes),
    so each distinct ``fingerprint`` (the caller's graph signature, with a digest of the code that
    builds the graph) gets its own folder. The switch is MindSpore's environment, restored on exit: neither a
    later run in this process nor a child process inherits a folder meant for another graph. With
    ``runtime.compile_cache: false`` the block runs with the cache off. Enter before the first compile.
    """
    saved = {key: os.environ.pop(key) for key in _CACHE_ENV if key in os.environ}
    cache_dir = None
    if cfg.compile_cache and cfg.mode == "graph":
        import mindspore as ms

        key = hashlib.sha1(f"{ms.__version__}|{info.device}|{fingerprint}".encode())
        cache_dir = os.path.join(cfg.cache_dir or default_cache_dir(), "compile", key.hexdigest()[:16])
        os.makedirs(cache_dir, exist_ok=True)
        _give_mindspore_an_entry_script(cache_dir)
        os.environ.update(MS_COMPILER_CACHE_ENABLE="1", MS_COMPILER_CACHE_PATH=cache_dir)
        log.info("compile cache %s", cache_dir)
    info.cache_dir = cache_dir
    try:
        yield cache_dir
    finally:
        for key in _CACHE_ENV:
            os.environ.pop(key, None)
        os.environ.update(saved)
