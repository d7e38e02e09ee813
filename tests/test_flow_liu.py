"""Ce Liu-style coarse-to-fine flow (pipeline.flow_liu): accuracy on real images with exact
ground truth, degenerate input, batching, precision, backends and the estimator interface.

Images are small (64-128 px) so that the file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from pipeline.flow import liu as flow_liu
from pipeline.flow import liu_kernel
from pipeline.flow import make_estimator
from pipeline.flow.liu import LiuEstimator, liu_flow

SIZE = 96
PAD = 16


def _photo(name: str, size: int) -> np.ndarray:
    """A real photograph, area-resized to (size + 2·PAD)², uint8 RGB."""
    img = getattr(skimage.data, name)()
    return cv2.resize(img, (size + 2 * PAD, size + 2 * PAD), interpolation=cv2.INTER_AREA)


def _synthetic_pair(photo: np.ndarray, field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact ground truth: im1 = photo sampled at grid + field, im2 = the plain crop, so im2(x + F(x)) = im1(x).

    field: (H, W, 2) float32 on image 1's grid. Returns two (H, W, 3) uint8 images.
    """
    h, w = field.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    im1 = cv2.remap(photo, xs + PAD + field[..., 0], ys + PAD + field[..., 1], cv2.INTER_LINEAR)
    im2 = photo[PAD:PAD + h, PAD:PAD + w].copy()
    return im1, im2


def _tensor(*imgs: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W, 3) uint8 images -> (B, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).to(dtype) / 255.0


def _epe(flow: np.ndarray, truth: np.ndarray, border: int = 0) -> float:
    """Mean endpoint error of (H, W, 2) arrays, optionally without a border band."""
    if border:
        flow, truth = flow[border:-border, border:-border], truth[border:-border, border:-border]
    return float(np.linalg.norm(flow - truth, axis=-1).mean())


@pytest.fixture(scope="module")
def estimator() -> LiuEstimator:
    return LiuEstimator(device="cpu", threads=2)


@pytest.mark.parametrize("shift", [(2.0, -1.0), (1.5, 0.75)], ids=["integer", "subpixel"])
def test_constant_translation_is_recovered(estimator: LiuEstimator, shift: tuple[float, float]) -> None:
    field = np.empty((SIZE, SIZE, 2), np.float32)
    field[..., 0], field[..., 1] = shift
    im1, im2 = _synthetic_pair(_photo("astronaut", SIZE), field)
    flow = estimator.estimate(im1[None], im2[None])[0]
    assert flow.shape == (SIZE, SIZE, 2) and flow.dtype == np.float32
    # interior: a few pixels at the border see content that left the frame
    assert _epe(flow, field, border=4) < 0.03
    assert np.abs(np.median(flow.reshape(-1, 2), axis=0) - np.array(shift)).max() < 0.01
    assert _epe(flow, field) < 0.1


def test_smooth_nonrigid_warp_is_recovered(estimator: LiuEstimator) -> None:
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    field = np.stack((2.5 * np.sin(2 * np.pi * ys) * np.cos(np.pi * xs),
                      -2.0 * np.exp(-((xs - 0.5) ** 2 + (ys - 0.4) ** 2) / 0.05)), -1).astype(np.float32)
    im1, im2 = _synthetic_pair(_photo("chelsea", SIZE), field)
    flow = estimator.estimate(im1[None], im2[None])[0]
    zero_epe = _epe(np.zeros_like(field), field)
    assert zero_epe > 1.0  # the motion is not trivial
    assert _epe(flow, field, border=4) < 0.1
    assert _epe(flow, field) < 0.15


def test_identical_frames_give_zero_flow() -> None:
    photo = _photo("astronaut", 64)[:64, :64]
    flat = np.full((64, 64, 3), 128, np.uint8)
    for img in (photo, flat):
        x = _tensor(img)
        flow = liu_flow(x, x.clone())
        assert torch.isfinite(flow).all()
        assert flow.abs().max().item() == 0.0


def test_batch_equals_one_by_one() -> None:
    photo = _photo("chelsea", 48)
    pairs = [_synthetic_pair(photo, np.full((48, 48, 2), v, np.float32)) for v in (0.5, -1.25, 2.0)]
    im1 = _tensor(*[p[0] for p in pairs])
    im2 = _tensor(*[p[1] for p in pairs])
    for backend in ("c", "torch"):
        if backend == "c" and not liu_kernel.available():
            continue
        batched = liu_flow(im1, im2, backend=backend)
        single = torch.cat([liu_flow(im1[i:i + 1], im2[i:i + 1], backend=backend) for i in range(3)])
        assert torch.allclose(batched, single, rtol=0, atol=1e-6), backend
        assert torch.equal(liu_flow(im1, im2, backend=backend), batched)  # deterministic


def test_float64_and_float32_agree() -> None:
    im1, im2 = _synthetic_pair(_photo("astronaut", 64), np.full((64, 64, 2), 1.3, np.float32))
    f64 = liu_flow(_tensor(im1, dtype=torch.float64), _tensor(im2, dtype=torch.float64))
    f32 = liu_flow(_tensor(im1), _tensor(im2))
    assert f64.dtype == torch.float64 and f32.dtype == torch.float32
    diff = (f64 - f32.double()).abs()
    assert diff.mean().item() < 1e-3 and diff.max().item() < 2e-2


def test_c_kernel_matches_torch_sor() -> None:
    if not liu_kernel.available():
        pytest.skip("no C++ compiler: only the torch SOR path exists here")
    # odd width: the compacted red-black layout has a ragged last column
    im1, im2 = _synthetic_pair(_photo("chelsea", 48), np.full((48, 47, 2), 0.7, np.float32))
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        a, b = _tensor(im1, dtype=dtype), _tensor(im2, dtype=dtype)
        fc, ft = liu_flow(a, b, backend="c"), liu_flow(a, b, backend="torch")
        assert (fc - ft).abs().max().item() < tol, dtype


def test_large_motion_through_the_pyramid(estimator: LiuEstimator) -> None:
    """A 6-pixel shift at 96 px: only the coarse levels can see it."""
    field = np.zeros((SIZE, SIZE, 2), np.float32)
    field[..., 0] = -6.0
    im1, im2 = _synthetic_pair(_photo("astronaut", SIZE), field)
    flow = estimator.estimate(im1[None], im2[None])[0]
    assert _epe(flow, field, border=8) < 0.05


def test_estimator_interface_and_chunking() -> None:
    est = make_estimator("liu", device="cpu", batch_size=2)
    assert est.name == "liu"
    assert est.params() == {"alpha": 0.012, "ratio": 0.75, "min_width": 20, "n_outer": 7, "n_inner": 1,
                            "n_sor": 30, "omega": 1.8, "dtype": "float32"}
    rng = np.random.default_rng(0)
    first = cv2.GaussianBlur(rng.integers(0, 256, (3, 40, 48, 3), np.uint8).reshape(120, 48, 3), (5, 5), 1.5).reshape(3, 40, 48, 3)
    second = np.roll(first, 1, axis=2)
    chunked = est.estimate(first, second)
    whole = make_estimator("liu", device="cpu", batch_size=3).estimate(first, second)
    assert chunked.shape == (3, 40, 48, 2) and chunked.dtype == np.float32
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)
    single = est.estimate(first[0], second[0])  # one (H, W, 3) pair is accepted too
    assert single.shape == (1, 40, 48, 2)


def test_estimator_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="bogus"):
        LiuEstimator(bogus=1)
    with pytest.raises(ValueError, match="device"):
        LiuEstimator(device="tpu")
    with pytest.raises(ValueError, match="dtype"):
        LiuEstimator(dtype="float16")
    with pytest.raises(ValueError):
        liu_flow(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
