"""The arithmetic a device can do at best: vendor peaks for GPUs, a measured matmul rate for the CPU.

GPU figures are NVIDIA's datasheet numbers in TFLOP/s, DENSE (the datasheets' headline tensor
figures assume 2:4 sparsity and are twice these), at boost clock, per GPU as torch sees it (a K80
board is two GK210 devices). None: no such arithmetic path on that GPU (no bf16 before Ampere;
TF32 is Ampere and later). Measured speed divided by these is the fraction of peak the bench prints.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GpuPeak:
    name: str
    pattern: str  # regular expression searched in torch.cuda.get_device_name()
    bf16: float | None  # dense bf16 tensor-core TFLOP/s (fp32 accumulate)
    tf32: float | None  # dense TF32 tensor-core TFLOP/s (cuDNN's default for fp32 convs on Ampere+)
    fp32: float  # plain fp32 (CUDA cores) TFLOP/s

    def for_precision(self, precision: str) -> float | None:
        return {"bf16": self.bf16, "tf32": self.tf32, "fp32": self.fp32}[precision]


# Most specific first: the first pattern that matches wins ("H100 PCIe" before "H100", "L40S" before "L4").
GPU_PEAKS: tuple[GpuPeak, ...] = (
    GpuPeak("B200", r"\bB200\b", 2250.0, 1100.0, 75.0),
    GpuPeak("H200 NVL", r"\bH200 NVL\b", 835.0, 417.5, 60.0),
    GpuPeak("H200 SXM", r"\bH200\b", 989.4, 494.7, 66.9),
    GpuPeak("GH200", r"\bGH200\b", 989.4, 494.7, 66.9),
    GpuPeak("H100 PCIe", r"\bH100\b.*\bPCIe\b", 756.0, 378.0, 51.2),
    GpuPeak("H100 NVL", r"\bH100 NVL\b", 835.0, 417.5, 60.0),
    GpuPeak("H100 SXM", r"\bH100\b", 989.4, 494.7, 66.9),
    GpuPeak("A100", r"\bA100\b", 312.0, 156.0, 19.5),
    GpuPeak("A10", r"\bA10\b", 125.0, 62.5, 31.2),
    GpuPeak("L40S", r"\bL40S\b", 362.0, 183.0, 91.6),
    GpuPeak("L40", r"\bL40\b", 181.0, 90.5, 90.5),
    GpuPeak("L4", r"\bL4\b", 121.0, 60.0, 30.3),
    GpuPeak("RTX 4090", r"\bRTX 4090\b", 165.2, 82.6, 82.6),
    GpuPeak("RTX 3090", r"\bRTX 3090\b", 35.6, 35.6, 35.6),
    GpuPeak("V100S PCIe", r"\bV100S\b", None, None, 16.4),
    GpuPeak("V100 PCIe", r"\bV100\b.*\bPCIE\b", None, None, 14.0),
    GpuPeak("V100 SXM2", r"\bV100\b", None, None, 15.7),
    GpuPeak("T4", r"\bT4\b", None, None, 8.1),
    GpuPeak("P100 PCIe", r"\bP100\b.*\bPCIE\b", None, None, 9.3),
    GpuPeak("P100 SXM2", r"\bP100\b", None, None, 10.6),
    GpuPeak("K80 (one GK210)", r"\bK80\b", None, None, 4.37),
)


def gpu_peak(device_name: str) -> GpuPeak | None:
    """The table row for a torch.cuda.get_device_name() string (case-insensitive), or None if unknown."""
    for row in GPU_PEAKS:
        if re.search(row.pattern, device_name, flags=re.IGNORECASE):
            return row
    return None


def cuda_precision(mixed_precision: bool, device: torch.device) -> str:
    """The arithmetic the convs run in: bf16 under autocast; TF32 for fp32 convs on Ampere and later
    (cuDNN's default, torch.backends.cudnn.allow_tf32); plain fp32 otherwise."""
    if mixed_precision:
        return "bf16"
    major, _ = torch.cuda.get_device_capability(device)
    return "tf32" if major >= 8 and torch.backends.cudnn.allow_tf32 else "fp32"


def measure_cpu_matmul_tflops(n: int = 2048, seconds: float = 1.0) -> float:
    """This machine's fp32 matmul rate now (n x n sgemm in a loop, torch's current thread count).

    On a shared machine the figure moves with the other jobs: it is measured in the same run as the
    training steps it is compared with.
    """
    a = torch.rand(n, n)
    b = torch.rand(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up: thread pool and packing buffers
    count = 0
    started = time.perf_counter()
    while True:
        torch.mm(a, b, out=out)
        count += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return 2.0 * n**3 * count / elapsed / 1e12


@dataclass(frozen=True)
class DevicePeak:
    tflops: float | None
    precision: str
    source: str  # where the figure comes from, in words


def device_peak(device: torch.device, mixed_precision: bool, *, cpu_seconds: float = 1.0) -> DevicePeak:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        precision = cuda_precision(mixed_precision, device)
        row = gpu_peak(name)
        if row is None:
            return DevicePeak(None, precision, f"{name}: not in cnnrepro.bench.peaks.GPU_PEAKS")
        value = row.for_precision(precision)
        where = f"{name} = {row.name}, dense {precision} datasheet peak"
        return DevicePeak(value, precision, where if value is not None else f"{where}: no such path")
    if device.type == "cpu":
        tflops = measure_cpu_matmul_tflops(seconds=cpu_seconds)
        return DevicePeak(tflops, "fp32", f"measured 2048x2048 fp32 matmul, {torch.get_num_threads()} threads, now")
    return DevicePeak(None, "fp32", f"{device.type}: no peak known")
