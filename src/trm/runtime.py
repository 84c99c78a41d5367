"""Device, precision, distributed set-up and the provenance saved with every run."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but CUDA is not available")
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX). Without it, oneDNN falls back to
    a reference kernel: on an AVX2-only EPYC we measured a 2048^3 bf16 matmul at 0.3 GFLOP/s against
    163 GFLOP/s in fp32, so bf16 autocast there would make training ~100x slower, not 4x faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (else what platform knows)."""
    try:
        return next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU's vector flags that decide a step's speed: avx2, avx512*, amx*."""
    try:
        line = next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("avx512", "amx")) or f == "avx2")


def matmul_rate(device, dtype, sizes=(1024, 2048), seconds=3.0) -> float:
    """The best square-matmul rate (FLOP/s) over `sizes`: the machine's practical ceiling for the steps' matmuls."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        a @ b
        sync()
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            reps += 1
        sync()
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t0))
    return best


def machine_record(seconds: float = 1.0) -> dict:
    """What a CPU run's speed depends on: the model, its vector flags and its 1-thread matmul rate (measured
    now, over `seconds`). bf16 is timed only with hardware bf16: the reference kernel takes seconds a matmul."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    try:
        fp32 = matmul_rate(cpu, torch.float32, (1024,), seconds)
        bf16 = matmul_rate(cpu, torch.bfloat16, (1024,), seconds) if cpu_has_fast_bf16() else None
    finally:
        torch.set_num_threads(prev)
    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "flags": cpu_flags(),
            "avx512_bf16": cpu_has_fast_bf16(), "fp32_1thread_gflops": round(fp32 / 1e9, 1),
            "bf16_1thread_gflops": None if bf16 is None else round(bf16 / 1e9, 1)}


def tune_allocator() -> bool:
    """Keep freed tensor memory in the heap instead of returning it to the OS (glibc on Linux).

    glibc serves blocks over its mmap threshold with fresh mmaps and unmaps them on free, so every large
    activation of a no-grad rollout is page-faulted in again: evaluating a 6x6 checkpoint on 200 puzzles spent
    32 of its 86 CPU seconds in the kernel. Raising the thresholds (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD,
    M_TOP_PAD) made that 0.5 s, same results. Returns False where there is no glibc."""
    import ctypes
    import ctypes.util
    import sys
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, 32 << 20) and libc.mallopt(-1, 1 << 30) and libc.mallopt(-2, 256 << 20))
    except (OSError, AttributeError):
        return False


def resolve_dtype(dtype: str, device: torch.device) -> str:
    """'auto' = bf16 on GPUs and on CPUs with hardware bf16, else fp32."""
    if dtype not in ("auto", "bf16", "fp32"):
        raise ValueError(f"dtype must be auto, bf16 or fp32, not '{dtype}'")
    if dtype != "auto":
        return dtype
    if device.type == "cuda":
        return "bf16"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, dtype: str):
    """bf16 autocast (fp32 master weights) on CPU and GPU; a no-op for fp32."""
    dtype = resolve_dtype(dtype, device)
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def loss_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def exit_worker(code: int) -> int:
    """End a torchrun worker without the interpreter's teardown. DDP's reducer keeps the gloo process group
    alive past destroy_process_group (its threads survive it, whatever the Python side frees), and the C++
    static destructors at exit can then meet those threads: "terminate called without an active exception",
    SIGABRT, after a run that had finished and saved (2 runs in 30 of tests/test_ddp.py's command on a loaded
    2-core machine). Outside a torchrun group (WORLD_SIZE, as init_distributed reads it) this returns `code`."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def init_distributed(device_name: str = "auto") -> tuple[int, int, torch.device]:
    """Join a torchrun process group when launched by torchrun; returns (rank, world_size, device)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    device = pick_device(device_name)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, world, device


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict:
    import numpy
    import trm
    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
           "trm": trm.__version__, "platform": platform.platform(), "device": str(device),
           "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "world_size": dist.get_world_size() if dist.is_initialized() else 1}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
