"""Ce Liu's coarse-to-fine variational optical flow (Liu 2009, "Beyond Pixels"), batched in PyTorch.

A port of the algorithm of Liu's Coarse2Fine C++ code (as wrapped by pyflow) that runs
on a batch of image pairs at once, on CPU or GPU:

* Gaussian pyramid down to ``min_width`` pixels wide, level ``i`` smoothed with
  sigma = (1/ratio - 1)·i and resized by ratio^i (Liu's resize: bilinear, clamped edges).
* Five features per pixel: grey, d/dx and d/dy (5-tap [1, -8, 0, 8, -1]/12), G-R, G-B.
* Per level, ``n_outer + k`` warping iterations (k = level, 0 finest); each warps
  image 2's features by the current flow (pixels warped outside take image 1's
  value), takes derivatives of the 0.4/0.6 blend of the slightly smoothed features,
  builds the IRLS system with Charbonnier weights (eps = 1e-3) for the data term
  (per channel, averaged over channels) and the smoothness term (forward
  differences), adds 0.05·alpha to the diagonal and solves for the increment with
  ``n_sor + 3k`` SOR sweeps (omega = 1.8).

Liu's SOR is lexicographic (sequential). Here it is red-black: all pixels with
even i + j, then all with odd i + j. For the 5-point stencil that ordering is
"consistently ordered", so it has the same fixed point and the same asymptotic
convergence rate for a given omega as the lexicographic sweep (Young's SOR
theory), while every half-sweep is a data-parallel elementwise update. Within a
pixel, du is updated first and dv then uses the new du, as in Liu's code. On the
CPU the sweeps run in a small C++ kernel built at first use (:mod:`pipeline.flow.liu_kernel`); elsewhere,
or without a compiler, in torch ops. Every
operation is a fixed-order elementwise or gather op (no atomics, no cuDNN
convolutions), so results are deterministic on CPU and GPU.

Memory: live tensors at full resolution are about 100 planes of H·W values per
pair (pyramids, features, warped and smoothed features, derivatives, IRLS weights,
the SOR system and its compacted copy in the C++ kernel); the measured peak RSS
growth, allocator slack included, is about 200·H·W·itemsize bytes: ~51 MB per
256×256 pair in float32 (~0.4 GB for a batch of 8), twice that in float64. Batches
are bounded by :class:`LiuEstimator`'s ``batch_size``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.flow import check_pairs
from pipeline.flow import liu_kernel

log = logging.getLogger(__name__)

Tensor = torch.Tensor

_EPS2 = 1e-3 ** 2  # Charbonnier epsilon^2 for the data and smoothness terms
_DERIV_TAPS = (1.0 / 12, -8.0 / 12, 0.0, 8.0 / 12, -1.0 / 12)  # correlation taps at offsets -2..2
_BLUR_TAPS = (0.02, 0.11, 0.74, 0.11, 0.02)  # Liu's pre-derivative smoothing in getDxs


# ----------------------------------------------------------------------------- filtering


def _filter_axis(x: Tensor, taps: tuple[float, ...] | Tensor, dim: int) -> Tensor:
    """Correlate (..., H, W) with a centred 1-D kernel along ``dim`` (-1 or -2), replicate borders.

    Shifted slices summed in a fixed order: exact in any dtype and deterministic on
    every device (cuDNN convolutions may not be).
    """
    r = (len(taps) - 1) // 2
    if r == 0:
        return x * float(taps[0])
    shape = x.shape
    first, last = x.narrow(dim, 0, 1), x.narrow(dim, shape[dim] - 1, 1)
    reps = [1] * x.dim()
    reps[dim] = r
    xp = torch.cat((first.repeat(reps), x, last.repeat(reps)), dim)  # replicate padding
    n = shape[dim]
    out = None
    for t, w in enumerate(taps):
        w = float(w)
        if w == 0.0:
            continue
        sl = xp.narrow(dim, t, n)
        out = sl * w if out is None else out.add_(sl, alpha=w)
    return out


def _gaussian_taps(sigma: float) -> list[float]:
    """Liu's GaussianSmoothing kernel: half-size int(3·sigma), normalised exp(-x²/2σ²)."""
    half = int(sigma * 3)
    g = [math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(-half, half + 1)]
    s = sum(g)
    return [v / s for v in g]


def _smooth(x: Tensor, taps: list[float] | tuple[float, ...]) -> Tensor:
    """Separable smoothing of (..., H, W), replicate borders."""
    return _filter_axis(_filter_axis(x, taps, -1), taps, -2)


def _dx(x: Tensor) -> Tensor:
    """5-tap horizontal derivative of (..., H, W) (Liu's 'advanced' dx)."""
    return _filter_axis(x, _DERIV_TAPS, -1)


def _dy(x: Tensor) -> Tensor:
    """5-tap vertical derivative of (..., H, W)."""
    return _filter_axis(x, _DERIV_TAPS, -2)


# ----------------------------------------------------------------------------- resampling


def _select(x: Tensor, idx: Tensor, dim: int) -> Tensor:
    """``x.index_select(dim, idx)``; along the last dim through a 2-D view, the same values
    ~20x faster in torch's CPU kernels (the pyramid's resizing was a fifth of a pair's time)."""
    if dim in (-1, x.dim() - 1):
        return x.reshape(-1, x.shape[-1]).index_select(1, idx).view(*x.shape[:-1], idx.numel())
    return x.index_select(dim, idx)


def _resize_axis(x: Tensor, n_out: int, scale: float, dim: int) -> Tensor:
    """Liu's bilinear resize along one axis: output j samples input at (j+1)/scale - 1, clamped."""
    n_in = x.shape[dim]
    pos = (torch.arange(n_out, dtype=torch.float64) + 1.0) / scale - 1.0
    i0 = torch.floor(pos)
    w = (pos - i0).to(x.dtype).to(x.device)
    i0 = i0.long()
    i1 = (i0 + 1).clamp(0, n_in - 1).to(x.device)
    i0 = i0.clamp(0, n_in - 1).to(x.device)
    a = _select(x, i0, dim)
    b = _select(x, i1, dim)
    shape = [1] * x.dim()
    shape[dim] = n_out
    return torch.lerp(a, b, w.view(shape))


def _resize(x: Tensor, h: int, w: int, scale_y: float | None = None, scale_x: float | None = None) -> Tensor:
    """Resize (..., H, W) to (..., h, w); the scales default to the size ratios."""
    sy = scale_y if scale_y is not None else h / x.shape[-2]
    sx = scale_x if scale_x is not None else w / x.shape[-1]
    return _resize_axis(_resize_axis(x, w, sx, -1), h, sy, -2)


def _warp(f2: Tensor, f1: Tensor, flow: Tensor) -> Tensor:
    """Bilinear sample of f2 (B, C, H, W) at x + flow; points outside take f1's value.

    flow: (B, 2, H, W). Liu's warpFL: a sample point with x < 0, x > W-1, y < 0 or
    y > H-1 copies image 1 (so it contributes no temporal derivative). Gathers from
    integer pixel indices with fractional weights, so a zero flow reproduces f2
    exactly (grid_sample's normalised coordinates would not).
    """
    b, c, h, w = f2.shape
    ys = torch.arange(h, dtype=f2.dtype, device=f2.device).view(1, h, 1)
    xs = torch.arange(w, dtype=f2.dtype, device=f2.device).view(1, 1, w)
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    outside = ((x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)).unsqueeze(1)
    x = x.clamp(0, w - 1)
    y = y.clamp(0, h - 1)
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0).unsqueeze(1), (y - y0).unsqueeze(1)
    x0i, y0i = x0.long(), y0.long()
    x1i, y1i = (x0i + 1).clamp(max=w - 1), (y0i + 1).clamp(max=h - 1)
    flat = f2.reshape(b, c, h * w)

    def tap(yi: Tensor, xi: Tensor) -> Tensor:
        return flat.gather(2, (yi * w + xi).view(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)

    top = torch.lerp(tap(y0i, x0i), tap(y0i, x1i), fx)
    bottom = torch.lerp(tap(y1i, x0i), tap(y1i, x1i), fx)
    return torch.where(outside, f1, torch.lerp(top, bottom, fy))


# ----------------------------------------------------------------------------- features and pyramid


def _features(img: Tensor) -> Tensor:
    """(N, 3, H, W) RGB -> (N, 5, H, W): grey, d/dx grey, d/dy grey, G-R, G-B."""
    r, g, b = img[:, 0:1], img[:, 1:2], img[:, 2:3]
    grey = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.cat((grey, _dx(grey), _dy(grey), g - r, g - b), dim=1)


def pyramid_sizes(h: int, w: int, ratio: float, min_width: int) -> list[tuple[int, int]]:
    """(h, w) of each pyramid level, finest first; Liu's int(log(minWidth/W)/log(ratio)) levels (at least 1)."""
    n = int(math.log(min_width / w) / math.log(ratio)) if w > min_width else 1
    n = max(n, 1)
    return [(int(h * ratio ** i), int(w * ratio ** i)) for i in range(n)]


def _pyramid(img: Tensor, ratio: float, min_width: int) -> list[Tensor]:
    """Gaussian pyramid of (N, C, H, W), finest first: level i = resize(smooth(img, (1/ratio-1)·i), ratio^i)."""
    sizes = pyramid_sizes(img.shape[-2], img.shape[-1], ratio, min_width)
    levels = [img]
    base_sigma = 1.0 / ratio - 1.0
    for i in range(1, len(sizes)):
        s = ratio ** i
        sm = _smooth(img, _gaussian_taps(base_sigma * i))
        levels.append(_resize(sm, sizes[i][0], sizes[i][1], s, s))
    return levels


# ----------------------------------------------------------------------------- the IRLS system and SOR


def _forward_diffs(x: Tensor) -> tuple[Tensor, Tensor]:
    """Forward differences of (B, C, H, W) along x and y; zero in the last column/row."""
    dx = torch.zeros_like(x)
    dy = torch.zeros_like(x)
    dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    return dx, dy


def _neighbour_sum(d: Tensor, wl: Tensor, wr: Tensor, wu: Tensor, wd: Tensor) -> Tensor:
    """Σ_q w_pq d_q over the 4 neighbours of (B, C, H, W) d; weights (B, 1, H, W), zero at the borders."""
    dp = F.pad(d, (1, 1, 1, 1))
    out = wl * dp[..., 1:-1, :-2]
    out.addcmul_(wr, dp[..., 1:-1, 2:])
    out.addcmul_(wu, dp[..., :-2, 1:-1])
    out.addcmul_(wd, dp[..., 2:, 1:-1])
    return out


def _sor_half(du: Tensor, dv: Tensor, wl: Tensor, wr: Tensor, wu: Tensor, wd: Tensor,
              bu: Tensor, bv: Tensor, ixy: Tensor, cu: Tensor, cv: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """One colour's SOR update; all (B, 1, H, W).

    cu = omega·mask/diag_u, keep = 1 - omega·mask (mask = this colour), so pixels of
    the other colour are left exactly unchanged. du first, then dv with the new du.
    """
    n = _neighbour_sum(torch.cat((du, dv), 1), wl, wr, wu, wd)
    tu = (n[:, 0:1] + bu).addcmul_(ixy, dv, value=-1.0)
    du = (du * keep).addcmul_(cu, tu)
    tv = (n[:, 1:2] + bv).addcmul_(ixy, du, value=-1.0)
    dv = (dv * keep).addcmul_(cv, tv)
    return du, dv


def _sor_sweeps_torch(n_sweeps: int, omega: float, wl: Tensor, wr: Tensor, wu: Tensor, wd: Tensor,
                      bu: Tensor, bv: Tensor, ixy: Tensor, inv_u: Tensor, inv_v: Tensor,
                      red: Tensor) -> tuple[Tensor, Tensor]:
    """``n_sweeps`` red-black SOR sweeps from du = dv = 0 in torch ops; returns (du, dv), each (B, 1, H, W).

    inv_u = 1 / diag_u, inv_v = 1 / diag_v; red: (1, 1, H, W) 1 where i + j is even.
    Each half-sweep updates every pixel and keeps the other colour exactly via
    keep = 1 (and coefficient 0) there: twice the arithmetic of a compacted layout,
    but a dozen large elementwise ops per half-sweep, which is what a GPU wants.
    """
    blk = 1.0 - red
    cu_red, cv_red, keep_red = (omega * red) * inv_u, (omega * red) * inv_v, 1.0 - omega * red
    cu_blk, cv_blk, keep_blk = (omega * blk) * inv_u, (omega * blk) * inv_v, 1.0 - omega * blk
    du = torch.zeros_like(bu)
    dv = torch.zeros_like(bv)
    for _ in range(n_sweeps):
        du, dv = _sor_half(du, dv, wl, wr, wu, wd, bu, bv, ixy, cu_red, cv_red, keep_red)
        du, dv = _sor_half(du, dv, wl, wr, wu, wd, bu, bv, ixy, cu_blk, cv_blk, keep_blk)
    return du, dv


def _smooth_flow_sor(f1: Tensor, f2: Tensor, flow: Tensor, alpha: float,
                     n_outer: int, n_inner: int, n_sor: int, omega: float) -> Tensor:
    """Liu's SmoothFlowSOR at one level, in torch ops (the C++ kernel's reference).

    f1, f2: the two images' features, (B, 5, H, W); flow: (B, 2, H, W), the initial
    flow. Returns the refined flow (B, 2, H, W).
    """
    b, _, h, w = flow.shape
    dev, dt = flow.device, flow.dtype
    ii = torch.arange(h, device=dev).view(h, 1)
    jj = torch.arange(w, device=dev).view(1, w)
    red = ((ii + jj) % 2 == 0).to(dt).view(1, 1, h, w)
    inner_x = (jj < w - 1).to(dt).view(1, 1, 1, w)  # an edge to the right exists
    inner_y = (ii < h - 1).to(dt).view(1, 1, h, 1)  # an edge below exists
    f1s = _smooth(f1, _BLUR_TAPS)
    ix1, iy1 = _dx(f1s).mul_(0.4), _dy(f1s).mul_(0.4)  # image 1's share of the blend's derivatives
    for count in range(n_outer):
        f2s = _smooth(_warp(f2, f1, flow), _BLUR_TAPS)
        # derivatives of the blend 0.4·f1s + 0.6·f2s (linear, so split)
        ix, iy, it = _dx(f2s).mul_(0.6).add_(ix1), _dy(f2s).mul_(0.6).add_(iy1), f2s - f1s
        du = torch.zeros((b, 1, h, w), dtype=dt, device=dev)
        dv = torch.zeros_like(du)
        for hh in range(n_inner):
            uu = flow if hh == 0 else flow + torch.cat((du, dv), 1)
            gx, gy = _forward_diffs(uu)
            phi = 0.5 / torch.sqrt((gx * gx + gy * gy).sum(1, keepdim=True) + _EPS2)  # (B, 1, H, W)
            resid = it if hh == 0 else it + ix * du + iy * dv  # du = dv = 0 on the first inner pass
            psi = 0.5 / torch.sqrt(resid * resid + _EPS2)  # (B, 5, H, W)
            pix, piy = psi * ix, psi * iy
            ix2 = (pix * ix).mean(1, keepdim=True)
            iy2 = (piy * iy).mean(1, keepdim=True)
            ixy = (pix * iy).mean(1, keepdim=True)
            ixt = (pix * it).mean(1, keepdim=True)
            iyt = (piy * it).mean(1, keepdim=True)
            # edge weights (alpha folded in): right/down edge of p has weight alpha·phi[p]
            wr = alpha * phi * inner_x
            wd = alpha * phi * inner_y
            wl = F.pad(wr[..., :, :-1], (1, 0, 0, 0))
            wu = F.pad(wd[..., :-1, :], (0, 0, 1, 0))
            wsum = wl + wr + wu + wd
            # Liu's Laplacian: sum_q w_pq (f_p - f_q), on the current flow (not uu)
            lap = wsum * flow - _neighbour_sum(flow, wl, wr, wu, wd)
            bu = -ixt - lap[:, 0:1]
            bv = -iyt - lap[:, 1:2]
            inv_u = 1.0 / (ix2 + 0.05 * alpha + wsum)
            inv_v = 1.0 / (iy2 + 0.05 * alpha + wsum)
            du, dv = _sor_sweeps_torch(n_sor, omega, wl, wr, wu, wd, bu, bv, ixy, inv_u, inv_v, red)
        flow = flow + torch.cat((du, dv), 1)
    return flow


def liu_flow(im1: Tensor, im2: Tensor, alpha: float = 0.012, ratio: float = 0.75, min_width: int = 20,
             n_outer: int = 7, n_inner: int = 1, n_sor: int = 30, omega: float = 1.8,
             backend: str = "auto") -> Tensor:
    """Coarse-to-fine flow from im1 to im2: (B, 3, H, W) RGB in [0, 1] -> (B, 2, H, W) (u, v).

    im1(x) ≈ im2(x + flow(x)). Runs on im1's device in im1's floating dtype (float32
    or float64); defaults are those of Liu's demo. Coarser level k (0 finest) runs
    n_outer + k warps and n_sor + 3k SOR sweeps, as in Liu's code.
    backend: "torch" (torch ops, any device), "c" (each level's warps, IRLS systems
    and SOR sweeps in the C++ kernel, CPU only) or "auto" (C++ on CPU when it builds,
    torch otherwise); the two agree to float rounding.
    """
    if backend not in ("auto", "torch", "c"):
        raise ValueError(f"backend must be auto, torch or c, got {backend!r}")
    if backend == "c" and im1.device.type != "cpu":
        raise ValueError("the C++ backend runs on CPU tensors only")
    use_c = backend == "c" or (backend == "auto" and im1.device.type == "cpu" and liu_kernel.available())
    if im1.shape != im2.shape or im1.dim() != 4 or im1.shape[1] != 3:
        raise ValueError(f"expected two (B, 3, H, W) tensors of equal shape, got {tuple(im1.shape)} and {tuple(im2.shape)}")
    if not im1.is_floating_point():
        raise ValueError(f"expected floating-point images in [0, 1], got {im1.dtype}")
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    im2 = im2.to(device=im1.device, dtype=im1.dtype)
    b = im1.shape[0]
    with torch.no_grad():
        pyr = _pyramid(torch.cat((im1, im2), 0), ratio, min_width)  # both images in one pass
        flow = None
        for k in range(len(pyr) - 1, -1, -1):
            feats = _features(pyr[k])
            f1, f2 = feats[:b], feats[b:]
            h, w = f1.shape[-2:]
            if flow is None:
                flow = torch.zeros((b, 2, h, w), dtype=im1.dtype, device=im1.device)
            else:
                flow = _resize(flow, h, w) * (1.0 / ratio)
            solve_level = liu_kernel.level if use_c else _smooth_flow_sor
            flow = solve_level(f1, f2, flow, alpha, n_outer + k, n_inner, n_sor + 3 * k, omega)
    return flow


class LiuEstimator:
    """Ce Liu's coarse-to-fine flow (:func:`liu_flow`) behind the estimator interface.

    ``device``: "auto" (CUDA when available), "cpu" or "cuda"; ``batch_size``: pairs
    per torch call (bounds memory, see the module docstring); ``threads``: CPU
    workers (0: torch's current thread count). On the CPU a chunk is split into
    ``threads`` sub-batches run concurrently from Python threads with torch's
    intra-op threads set to 1 (so a single pair uses one core): torch ops and the C++ kernel release the GIL, and
    there is no OpenMP barrier per small op, which on a shared 2-core machine cost
    more than it gave. ``backend``: SOR backend of :func:`liu_flow`;
    ``dtype``: "float32" or "float64". The runtime options (device, batch_size,
    threads, backend) change the result only at float rounding level, so
    :meth:`params` records the algorithm's parameters and the dtype.
    """

    name = "liu"
    DEFAULTS: dict[str, Any] = {
        "alpha": 0.012, "ratio": 0.75, "min_width": 20, "n_outer": 7, "n_inner": 1, "n_sor": 30,
        "omega": 1.8, "dtype": "float32",
    }
    RUNTIME: dict[str, Any] = {"device": "auto", "batch_size": 8, "threads": 0, "backend": "auto"}

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.DEFAULTS) - set(self.RUNTIME)
        if unknown:
            raise ValueError(f"unknown liu parameter(s): {sorted(unknown)}")
        merged = {**self.DEFAULTS, **self.RUNTIME, **params}
        if merged["dtype"] not in ("float32", "float64"):
            raise ValueError(f"liu dtype must be float32 or float64, got {merged['dtype']!r}")
        if merged["device"] not in ("auto", "cpu", "cuda"):
            raise ValueError(f"liu device must be auto, cpu or cuda, got {merged['device']!r}")
        if int(merged["batch_size"]) < 1:
            raise ValueError(f"liu batch_size must be >= 1, got {merged['batch_size']}")
        self._params = {k: merged[k] for k in self.DEFAULTS}
        device = merged["device"]
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.batch_size = int(merged["batch_size"])
        if merged["backend"] not in ("auto", "torch", "c"):
            raise ValueError(f"liu backend must be auto, torch or c, got {merged['backend']!r}")
        self.backend = merged["backend"]
        self.threads = int(merged["threads"]) if int(merged["threads"]) > 0 else torch.get_num_threads()

    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def estimate(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 RGB pairs -> (B, H, W, 2) float32 flow, in chunks of ``batch_size``."""
        first, second = check_pairs(first, second)
        p = self._params
        dtype = getattr(torch, p["dtype"])
        out = np.empty(first.shape[:3] + (2,), np.float32)

        def solve(lo: int, hi: int) -> None:
            a = _to_tensor(first[lo:hi], dtype, self.device)
            b = _to_tensor(second[lo:hi], dtype, self.device)
            flow = liu_flow(a, b, alpha=p["alpha"], ratio=p["ratio"], min_width=p["min_width"], n_outer=p["n_outer"],
                            n_inner=p["n_inner"], n_sor=p["n_sor"], omega=p["omega"], backend=self.backend)
            out[lo:hi] = flow.permute(0, 2, 3, 1).float().cpu().numpy()

        for s in range(0, first.shape[0], self.batch_size):
            e = min(s + self.batch_size, first.shape[0])
            if self.device.type != "cpu":
                solve(s, e)
                continue
            workers = min(self.threads, e - s)
            saved = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                if workers <= 1:
                    solve(s, e)
                else:
                    bounds = [(s + (e - s) * t // workers, s + (e - s) * (t + 1) // workers) for t in range(workers)]
                    list(liu_kernel.pool(workers).map(lambda lh: solve(*lh), bounds))
            finally:
                torch.set_num_threads(saved)
        return out


def _to_tensor(x: np.ndarray, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) in [0, 1]."""
    return torch.from_numpy(x).to(device).permute(0, 3, 1, 2).to(dtype).div_(255.0).contiguous()
