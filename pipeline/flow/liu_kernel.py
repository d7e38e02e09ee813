"""The CPU kernel of the ``liu`` estimator: red-black SOR sweeps in C++ (``liu_sor.cpp``).

The SOR sweeps are most of the arithmetic and, in torch ops, a dozen passes over
memory per half-sweep. On the CPU they run in a small C++ kernel instead (one
vectorised pass per colour). ctypes releases the GIL, so the pairs of a batch are
split over Python threads; no OpenMP, whose spinning pool would fight torch's own.
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
FLAGS = ["-O3", "-march=native", "-shared", "-fPIC"]
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
            raise RuntimeError(f"building the SOR kernel failed: {res.stderr.strip()[-2000:]}")
        os.replace(out, so)
    log.info("built the Liu SOR kernel: %s", so)


def kernel() -> Any:
    """Build (once per source, flags and host; cached on disk) and load the C++ SOR kernel."""
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
        _FAILED = f"C++ SOR kernel unavailable: {exc}"
        raise RuntimeError(_FAILED) from exc
    for name in ("liu_sor_f32", "liu_sor_f64"):
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = [ctypes.c_int] * 4 + [ctypes.c_double] + [ctypes.c_void_p] * 9
    _LIB = lib
    return lib


def available() -> bool:
    """True when the C++ SOR kernel builds and loads here (logs why not, once)."""
    try:
        kernel()
        return True
    except RuntimeError as exc:
        if not getattr(available, "_warned", False):
            log.warning("%s; using the torch SOR path", exc)
            available._warned = True  # type: ignore[attr-defined]
        return False


def pool(n: int) -> ThreadPoolExecutor:
    """A persistent thread pool of n workers for kernel calls (ctypes and torch release the GIL)."""
    if n not in _POOLS:
        _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="liu-sor")
    return _POOLS[n]


def sor_sweeps(n_sweeps: int, omega: float, wr: Tensor, wd: Tensor, bu: Tensor, bv: Tensor,
               ixy: Tensor, inv_u: Tensor, inv_v: Tensor) -> tuple[Tensor, Tensor]:
    """``n_sweeps`` red-black SOR sweeps from du = dv = 0; all (B, 1, H, W) CPU tensors -> (du, dv).

    wr, wd: right/down edge weights; bu, bv: right-hand sides; ixy: the u-v coupling;
    inv_u, inv_v: reciprocal diagonals. The pairs of the batch are split over
    ``torch.get_num_threads()`` Python threads.
    """
    args = [t.contiguous() for t in (wr, wd, bu, bv, ixy, inv_u, inv_v)]
    du = torch.zeros_like(args[2])
    dv = torch.zeros_like(args[2])
    b, _, h, w = du.shape
    lib = kernel()
    fn = lib.liu_sor_f64 if du.dtype == torch.float64 else lib.liu_sor_f32

    def run(lo: int, hi: int) -> None:
        ptrs = [ctypes.c_void_p(t[lo:hi].data_ptr()) for t in (du, dv, *args)]
        fn(hi - lo, h, w, n_sweeps, ctypes.c_double(omega), *ptrs)

    n_threads = min(b, max(1, torch.get_num_threads()))
    if n_threads == 1:
        run(0, b)
    else:
        bounds = [(b * t // n_threads, b * (t + 1) // n_threads) for t in range(n_threads)]
        list(pool(n_threads).map(lambda lh: run(*lh), bounds))
    return du, dv
