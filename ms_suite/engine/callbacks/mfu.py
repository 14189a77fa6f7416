"""Model FLOPs utilisation: the share of the device's peak that the model's arithmetic used.

MFU = training FLOPs per sample x samples/s / (peak FLOP/s per device x devices; a CPU host counts
once, however many ranks share it). Training FLOPs
per sample = 3 x the forward pass (the backward pass costs about twice the forward: gradients for
activations and for weights), counted by :func:`ms_suite.models.flops.count_flops` on the
task's count (:meth:`ms_suite.engine.tasks.Task.flops_per_sample`).

The peak comes from ``runtime.peak_tflops`` when set, else from :data:`DEVICE_PEAKS` (vendor
figures, dense, for the precision the recipe trains in), else, on CPU, from
:func:`cpu_peak`'s estimate.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Optional, Tuple

from ms_suite.engine.callbacks.base import Callback, RunContext, TrainState

log = logging.getLogger("ms_suite")


@dataclasses.dataclass(frozen=True)
class Peak:
    tflops: Optional[float]  # per device; None when unknown
    source: str              # where the number comes from (or why there is none)


@dataclasses.dataclass(frozen=True)
class DevicePeak:
    name: str                  # matched in the device name, ignoring case and spaces
    half: float                # FP16/BF16 dense TFLOPS (AMP levels O1-O3)
    single: Optional[float]    # the FP32 path's dense TFLOPS (O0); None: the vendor publishes none
    source: str


# First match wins, so more specific names come first. NVIDIA figures are dense (the datasheets'
# starred numbers assume 2:4 sparsity and are halved here). FP32 recipes on Ampere/Hopper use the
# TF32 tensor-core peak: MindSpore runs FP32 convolutions as TF32 by default
# (mindspore.device_context.gpu.op_precision.conv_allow_tf32 defaults to True).
DEVICE_PEAKS: Tuple[DevicePeak, ...] = (
    DevicePeak("Ascend910B", 320.0, None,
               "Ascend 910B: about 320 TFLOPS FP16 as reported for the 910B; Huawei publishes no per-SoC "
               "figure (910B1-B4 differ), so set runtime.peak_tflops for yours"),
    DevicePeak("Ascend910", 256.0, None, "Huawei Ascend 910 specification: 256 TFLOPS FP16"),
    DevicePeak("H100 PCIe", 756.0, 378.0, "NVIDIA H100 PCIe datasheet: FP16/BF16 756, TF32 378 TFLOPS (dense)"),
    DevicePeak("H100", 989.5, 494.5, "NVIDIA H100 SXM datasheet: FP16/BF16 989.5, TF32 494.5 TFLOPS (dense)"),
    DevicePeak("A100", 312.0, 156.0, "NVIDIA A100 datasheet: FP16/BF16 312, TF32 156 TFLOPS (dense)"),
)



@dataclasses.dataclass(frozen=True)
class VectorUnits:
    """A core's floating-point vector datapath: ``units`` pipes, each ``bits`` wide, doing fused
    multiply-adds (``fma``) or, without FMA, one add pipe and one multiply pipe."""

    units: int
    bits: int
    fma: bool
    why: str

    @property
    def fp32_flops_per_cycle(self) -> int:
        return self.units * (self.bits // 32) * (2 if self.fma else 1)  # an FMA is a multiply and an add


def vector_units(fields: dict) -> VectorUnits:
    """The FP32 vector datapath of the CPU described by /proc/cpuinfo ``fields`` (vendor, family, model
    name, flags). AVX-512 does not mean 512-bit pipes: AMD Zen 4 runs it on two 256-bit pipes, Zen 5
    has two 512-bit ones; Intel Xeon Silver/Bronze (and Skylake/Cascade Lake Gold 5xxx) have one
    512-bit FMA unit, other AVX-512 Xeons two."""
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    vendor, name = fields.get("vendor_id", ""), fields.get("model name", "")
    family = _int(fields.get("cpu family"))
    fma = bool(flags & {"fma", "asimd"})
    if "avx512f" in flags and vendor == "AuthenticAMD":
        if family >= 0x1A:
            return VectorUnits(2, 512, True, "AMD Zen 5: AVX-512 on 2 x 512-bit FMA pipes")
        return VectorUnits(2, 256, True, "AMD Zen 4: AVX-512 on 2 x 256-bit FMA pipes (double-pumped)")
    if "avx512f" in flags:
        one_unit = re.search(r"\b(Silver|Bronze)\b|Gold 5[12]\d\d", name)
        units = 1 if one_unit else 2
        return VectorUnits(units, 512, True, f"AVX-512, {units} x 512-bit FMA unit(s)"
                                             f"{' (' + one_unit.group(0) + ')' if one_unit else ''}")
    if vendor == "AuthenticAMD" and family == 0x17 and _int(fields.get("model")) < 0x30:
        return VectorUnits(2, 128, True, "AMD Zen/Zen+: AVX2 on 2 x 128-bit FMA pipes")
    if "avx2" in flags or "avx" in flags:
        isa = "AVX2" if "avx2" in flags else "AVX"
        return VectorUnits(2, 256, fma, f"{isa}, 2 x 256-bit {'FMA' if fma else 'add/mul'} pipes")
    if "asimd" in flags:
        return VectorUnits(2, 128, True, "NEON, 2 x 128-bit FMA pipes")
    return VectorUnits(2, 128, False, "SSE, 2 x 128-bit add/mul pipes")


def precision(amp_level: str) -> str:
    """The arithmetic the recipe trains in: MindSpore's AMP levels O1-O3 compute in FP16."""
    return "fp32" if amp_level == "O0" else "fp16"


def lookup_peak(device_name: str, precision_: str) -> Optional[Peak]:
    """The table's peak for a device name such as ``NVIDIA A100-SXM4-80GB`` or ``Ascend910B3``."""
    key = device_name.replace(" ", "").lower()
    for entry in DEVICE_PEAKS:
        if entry.name.replace(" ", "").lower() in key:
            if precision_ == "fp16" or entry.single is None:
                note = "" if precision_ == "fp16" else " (FP16 peak: no published FP32 figure)"
                return Peak(entry.half, f"{entry.source}; {precision_} run{note}")
            return Peak(entry.single, f"{entry.source}; fp32 run: TF32 peak")
    return None


def cpu_peak(cpuinfo: Optional[str] = None, cores: Optional[int] = None) -> Peak:
    """FP32 peak of the CPU cores this process may use: cores x FP32 FLOPs per cycle of the core's
    vector units (:func:`vector_units`: vendor, family, model name, ISA flags) x clock (GHz).

    Logical CPUs that share a core (SMT) count once. The clock is the nominal one from the model
    name (``@ 2.60GHz``), else ``cpu MHz`` (the base clock under a hypervisor, the current one on
    bare metal), else cpufreq's maximum.
    """
    text = cpuinfo if cpuinfo is not None else _read("/proc/cpuinfo")
    fields = _cpuinfo_fields(text)
    units = vector_units(fields)
    ghz = _clock_ghz(fields)
    if cores is None:
        threads_per_core = max(_int(fields.get("siblings")) // max(_int(fields.get("cpu cores")), 1), 1)
        cores = max(len(os.sched_getaffinity(0)) // threads_per_core, 1)
    if ghz is None:
        return Peak(None, "CPU clock unknown (no cpu MHz in /proc/cpuinfo, no cpufreq); set runtime.peak_tflops")
    tflops = cores * units.fp32_flops_per_cycle * ghz / 1000
    cpu = fields.get("model name") or fields.get("vendor_id") or "CPU"
    return Peak(round(tflops, 4), f"CPU estimate for {cpu}: {cores} cores x {units.fp32_flops_per_cycle} fp32 "
                                  f"FLOPs/cycle ({units.why}) x {ghz:.2f} GHz")


def device_name(device: str, device_id: int) -> str:
    """What the device calls itself (``NVIDIA A100-SXM4-80GB``, ``Ascend910B3``); the target name if unknown."""
    try:
        from mindspore import hal

        return str(hal.get_device_name(device_id, device))
    except Exception:  # noqa: BLE001 - the hal API varies across devices and versions
        return device


def resolve_peak(device: str, device_id: int, amp_level: str, override: Optional[float] = None) -> Peak:
    if override:
        return Peak(override, "runtime.peak_tflops")
    if device == "CPU":
        return cpu_peak()
    name = device_name(device, device_id)
    return lookup_peak(name, precision(amp_level)) or Peak(
        None, f"{device} {name!r} is not in the peak table; set runtime.peak_tflops")


class MfuReport(Callback):
    """Adds throughput figures to summary.json: the per-step split into data wait and compute
    (ms), model FLOPs per sample, achieved TFLOPS, the device peak and where it comes from, MFU."""

    def __init__(self, peak_tflops: Optional[float] = None):
        self.peak_tflops = peak_tflops

    def on_train_end(self, state: TrainState) -> None:
        context, timing = state.context, state.timing
        steps = timing.samples / context.global_batch
        if steps:
            state.summary.update(step_data_ms=round(1000 * timing.data_s / steps, 3),
                                 step_compute_ms=round(1000 * timing.compute_s / steps, 3))
        flops = self._flops(context)
        peak = resolve_peak(context.runtime.device, context.cfg.runtime.device_id, context.cfg.train.amp_level,
                            self.peak_tflops)
        achieved = (flops or 0) * timing.samples_per_s / 1e12  # all devices together
        # Ranks on a CPU host share its cores (msrun starts them on one machine): count its peak once.
        devices = 1 if context.runtime.device == "CPU" else context.dist.world_size
        mfu = achieved / (peak.tflops * devices) if peak.tflops and achieved else None
        state.summary.update(model_flops_per_sample=flops, achieved_tflops=round(achieved, 6),
                             peak_tflops=peak.tflops, peak_tflops_source=peak.source,
                             mfu=round(mfu, 6) if mfu is not None else None)
        log.info("MFU %s: %.4g TFLOPS achieved of %s TFLOPS peak x %d device(s) (%s)",
                 f"{100 * mfu:.2f}%" if mfu is not None else "n/a", achieved, peak.tflops, devices, peak.source)

    @staticmethod
    def _flops(context: RunContext) -> Optional[int]:
        try:
            return int(context.task.flops_per_sample(context.net, context.cfg, context.data_info))
        except Exception as err:  # noqa: BLE001 - a model the shape-based counter cannot feed: report, keep the run
            log.warning("MFU: cannot count the FLOPs of %s (%s: %s); override its task's flops_per_sample",
                        context.cfg.model.name, type(err).__name__, (str(err).strip().splitlines() or [""])[0])
            return None


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def _cpuinfo_fields(text: str) -> dict:
    """The first value of each ``key : value`` line of /proc/cpuinfo."""
    fields: dict = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _clock_ghz(fields: dict) -> Optional[float]:
    nominal = re.search(r"@\s*([\d.]+)\s*GHz", fields.get("model name", ""))
    if nominal:
        return float(nominal.group(1))
    if fields.get("cpu MHz"):
        return float(fields["cpu MHz"]) / 1000
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    return int(max_khz) / 1e6 if max_khz.isdigit() else None


def _int(value: Optional[str]) -> int:
    return int(value) if value and value.isdigit() else 0
