"""What a run was computed with: library versions, CPU, device and threads, recorded in summary.json.

Training is reproducible bit for bit on the same machine and library versions (seeds fix every random draw),
but not across CPUs: BLAS (MKL, OpenBLAS) and torch pick their vectorised kernels by instruction set (AVX2,
AVX-512, ...), which round differently; a tie in a query ranking or a step of SGD then goes another way and the
runs drift apart by about their seed spread. This record lets a reader see which of two runs to compare.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from importlib import metadata

import torch

#: packages whose versions change numbers (the installed distribution names)
PACKAGES = ("adakit", "torch", "numpy", "scipy", "scikit-learn", "faiss-cpu")
#: environment variables that pin or change the numerical kernels
KERNEL_VARIABLES = ("OMP_NUM_THREADS", "MKL_CBWR", "ATEN_CPU_CAPABILITY", "CUBLAS_WORKSPACE_CONFIG")


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_info() -> dict:
    """``cpu`` (the model name) and ``cpu_capability`` (the instruction set torch's CPU kernels use, e.g. "AVX2",
    "AVX512"): what a benchmark cell records beside its timings."""
    return {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def cpu_lacks_bf16() -> bool:
    """True on an x86 CPU without AMX or AVX512-BF16 (bf16 arithmetic emulated, slow); False where it has them, on
    other architectures and when torch cannot tell."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    probes = [getattr(torch.cpu, n, None) for n in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if any(p is None for p in probes):
        return False
    return not any(p() for p in probes)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(device: torch.device | str | None = None) -> dict:
    """The versions, CPU, kernel set, threads and (CUDA) device of this process, as a JSON-able dict.

    ``cpu_capability`` is the instruction set torch's CPU kernels use (e.g. "AVX2", "AVX512"); ``kernel_env``
    the environment variables set among `KERNEL_VARIABLES`. Packages that are not installed are left out; torch's
    version is its build's (e.g. "2.14.1+cu130").
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    env = {
        "versions": {n: v for n in PACKAGES if (v := _version(n)) is not None} | {"torch": torch.__version__},
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        **cpu_info(),
        "torch_threads": torch.get_num_threads(),
        "device": str(dev),
        "kernel_env": {k: os.environ[k] for k in KERNEL_VARIABLES if k in os.environ},
    }
    if dev.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(dev)
        env["cuda"] = torch.version.cuda
    return env
