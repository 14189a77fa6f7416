"""The CPU performance keys of `runtime` (benchmarks/vs_pytorch.py measures their effect)."""
import importlib.util
import os

import pytest

from conftest import ROOT
from ms_suite.config.schema import RuntimeConfig
from ms_suite.errors import UserError
from ms_suite.runtime import device


def test_jit_level_o2_is_refused_off_ascend():
    with pytest.raises(UserError, match="jit_level=O2.*Ascend"):
        device.apply_performance_settings(RuntimeConfig(jit_level="O2"), "CPU")


def test_graph_kernel_sets_the_fusion_flags(monkeypatch):
    # setenv (not delenv, which records nothing for an absent variable) so the flag set by the
    # code under test is removed afterwards and does not leak into later tests' subprocesses.
    monkeypatch.setenv("MS_DEV_GRAPH_KERNEL_FLAGS", "")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    device.apply_performance_settings(RuntimeConfig(graph_kernel=True), "CPU")
    assert device.os.environ["MS_DEV_GRAPH_KERNEL_FLAGS"] == "--opt_level=2"


def test_graph_kernel_keeps_an_exported_opt_level(monkeypatch):
    monkeypatch.setenv("MS_DEV_GRAPH_KERNEL_FLAGS", "--opt_level=1 --dump_as_text")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    device.apply_performance_settings(RuntimeConfig(graph_kernel=True), "CPU")
    assert device.os.environ["MS_DEV_GRAPH_KERNEL_FLAGS"] == "--opt_level=1 --dump_as_text"


def test_graph_kernel_on_cpu_names_the_missing_package(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install decorator"):
        device.apply_performance_settings(RuntimeConfig(graph_kernel=True), "CPU")


def test_vs_pytorch_skips_the_graph_kernel_row_without_its_package(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    import vs_pytorch

    assert vs_pytorch.unavailable(list(vs_pytorch.SETTINGS)) == {}  # `decorator` is a dependency: installed
    monkeypatch.setattr(device.importlib.util, "find_spec", lambda name: None)
    skipped = vs_pytorch.unavailable(list(vs_pytorch.SETTINGS))
    assert list(skipped) == ["runtime.graph_kernel=true"] and "pip install decorator" in skipped[
        "runtime.graph_kernel=true"]


def test_graph_kernel_needs_graph_mode():
    with pytest.raises(UserError, match="runtime.mode=graph"):
        device.apply_performance_settings(RuntimeConfig(graph_kernel=True, mode="pynative"), "CPU")


def test_process_wide_settings_apply_once(monkeypatch, caplog):
    calls = []
    monkeypatch.setattr(device, "_APPLIED", {})
    device._set_once("num_threads", 2, lambda: calls.append(2))
    device._set_once("num_threads", 2, lambda: calls.append(2))
    device._set_once("num_threads", 1, lambda: calls.append(1))
    assert calls == [2]
    assert "runtime.num_threads=1 ignored" in caplog.text


def test_compile_cache_is_keyed_and_scoped_to_its_block(monkeypatch, tmp_path):
    """The cache folder follows the graph fingerprint, and MindSpore's switch is undone on exit, so a
    later run in the process or a child process never compiles against another graph's folder."""
    monkeypatch.setenv("MS_COMPILER_CACHE_PATH", "/users/own/cache")
    monkeypatch.delenv("MS_COMPILER_CACHE_ENABLE", raising=False)
    info = device.RuntimeInfo("CPU", "test", "graph", None)
    on = RuntimeConfig(compile_cache=True, cache_dir=str(tmp_path))
    with device.compile_cache(info, on, "graph-a") as folder_a:
        assert device.os.environ["MS_COMPILER_CACHE_PATH"] == folder_a == info.cache_dir
        assert device.os.environ["MS_COMPILER_CACHE_ENABLE"] == "1"
    with device.compile_cache(info, on, "graph-b") as folder_b:
        assert folder_b != folder_a and folder_b.startswith(str(tmp_path))
    with device.compile_cache(info, RuntimeConfig(compile_cache=False), "graph-a") as off:
        assert off is None and "MS_COMPILER_CACHE_PATH" not in device.os.environ
    assert device.os.environ["MS_COMPILER_CACHE_PATH"] == "/users/own/cache"
    assert "MS_COMPILER_CACHE_ENABLE" not in device.os.environ
