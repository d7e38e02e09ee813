"""The CPU kernel of the ``liu`` estimator: one pyramid level in C++ (``liu_sor.cpp``).

In torch ops a level is about a thousand small passes over memory per pair (warping,
smoothing, derivatives, the IRLS system, then SOR sweeps that are memory-bound), so
on the CPU the whole per-level inner work runs in one C++ call for the batch instead,
the SOR as a cache-blocked wavefront; pyramids, features and the resizing of the flow
between levels stay in torch. ctypes releases the GIL and the kernel spreads the
pairs over std::threads (no OpenMP, whose spinning pool would fight torch's own).
Each pair is computed by one thread in a fixed order: deterministic whatever the
thread count. Built once with the system compiler (a few seconds) and cached by
source hash; without a compiler :mod:`pipeline.flow.liu` uses its torch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

Tensor = torch.Tensor

SOURCE_NAME = "liu_sor.cpp"
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-shared", "-fPIC", "-pthread"]
_LIB: Any = None
_FAILED: str | None = None
_POOLS: dict[int, ThreadPoolExecutor] = {}


def source() -> str:
    """The kernel's C++ source, shipped as package data."""
    return resources.files("pipeline.flow").joinpath(SOURCE_NAME).read_text(encoding="utf-8")


def _build(so: Path, text: str) -> None:
    """Compile ``text`` into the shared library ``so`` (renamed into place: concurrent jobs never
    load a half-written library)."""
    so.parent.mkdir(parents=True, exist_ok=True)
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++/c++) on PATH")
    with tempfile.TemporaryDirectory(dir=so.parent) as tmp:
        src = Path(tmp) / SOURCE_NAME
        src.write_text(text)
        out = Path(tmp) / so.name
        res = subprocess.run([cxx, *FLAGS, str(src), "-o", str(out)], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"building the liu kernel failed: {res.stderr.strip()[-2000:]}")
        os.replace(out, so)
    log.info("built the liu level kernel: %s", so)


def kernel() -> Any:
    """Build (once per source, flags and host; cached on disk) and load the C++ level kernel."""
    global _LIB, _FAILED
    if _LIB is not None:
        return _LIB
    if _FAILED is not None:
        raise RuntimeError(_FAILED)
    text = source()
    key = hashlib.sha256((text + " ".join(FLAGS) + platform.node() + platform.machine()).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("IM2FLOW_CACHE", Path.home() / ".cache" / "im2flow"))
    so = cache / f"liu_sor_{key}.so"
    try:
        if not so.exists():
            _build(so, text)
        lib = ctypes.CDLL(str(so))
    except (OSError, RuntimeError) as exc:
        _FAILED = f"C++ liu kernel unavailable: {exc}"
        raise RuntimeError(_FAILED) from exc
    for name in ("liu_level_f32", "liu_level_f64"):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_int] * 7 + [ctypes.c_double] * 2 + [ctypes.c_int] + [ctypes.c_void_p] * 3
    _LIB = lib
    return lib


def available() -> bool:
    """True when the C++ level kernel builds and loads here (logs why not, once)."""
    try:
        kernel()
        return True
    except RuntimeError as exc:
        if not getattr(available, "_warned", False):
            log.warning("%s; using the torch path", exc)
            available._warned = True  # type: ignore[attr-defined]
        return False


def pool(n: int) -> ThreadPoolExecutor:
    """A persistent thread pool of n workers for kernel calls (ctypes and torch release the GIL)."""
    if n not in _POOLS:
        _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="liu-sor")
    return _POOLS[n]


def level(f1: Tensor, f2: Tensor, flow: Tensor, alpha: float, n_outer: int, n_inner: int, n_sor: int,
          omega: float) -> Tensor:
    """One level of Liu's SmoothFlowSOR (what ``liu._smooth_flow_sor`` does in torch ops) on CPU tensors.

    f1, f2: the two images' features (B, C, H, W); flow: (B, 2, H, W), the initial
    flow (not modified). Returns the refined flow. The pairs are split over
    ``torch.get_num_threads()`` threads of the kernel.
    """
    f1, f2 = f1.contiguous(), f2.contiguous()
    out = flow.clone(memory_format=torch.contiguous_format)
    b, c, h, w = f1.shape
    lib = kernel()
    fn = lib.liu_level_f64 if out.dtype == torch.float64 else lib.liu_level_f32
    threads = min(b, max(1, torch.get_num_threads()))
    ptrs = [ctypes.c_void_p(t.data_ptr()) for t in (f1, f2, out)]
    if fn(b, c, h, w, n_outer, n_inner, n_sor, alpha, omega, threads, *ptrs) != 0:
        raise MemoryError("the liu level kernel failed (out of memory?)")
    return out
