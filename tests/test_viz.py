"""Colour wheel, legend, figure grid and `.flo` I/O (checked against OpenCV's reader and writer)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline import viz as flowviz
from pipeline.flow import flo


def _uniform(u: float, v: float, h: int = 4, w: int = 5) -> np.ndarray:
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = u, v
    return flow


def test_colorwheel_has_middlebury_segments():
    wheel = flowviz.make_colorwheel()
    assert wheel.shape == (55, 3)
    np.testing.assert_array_equal(wheel[0], [255, 0, 0])            # red
    np.testing.assert_array_equal(wheel[15], [255, 255, 0])         # yellow starts YG
    np.testing.assert_array_equal(wheel[21], [0, 255, 0])           # green starts GC
    np.testing.assert_array_equal(wheel[25], [0, 255, 255])         # cyan starts CB
    np.testing.assert_array_equal(wheel[36], [0, 0, 255])           # blue starts BM
    np.testing.assert_array_equal(wheel[49], [255, 0, 255])         # magenta starts MR
    assert wheel.min() >= 0 and wheel.max() <= 255


def test_directions_follow_middlebury_convention():
    # mix of directions in one flow so that all share the same max radius
    flow = np.zeros((1, 5, 2), np.float32)
    flow[0, 0] = (2, 0)    # right
    flow[0, 1] = (-2, 0)   # left
    flow[0, 2] = (0, 2)    # down (image y down)
    flow[0, 3] = (0, -2)   # up
    flow[0, 4] = (0, 0)    # still
    rgb = flowviz.flow_to_color(flow)
    assert rgb.dtype == np.uint8
    rgb = rgb.astype(int)
    right, left, down, up, still = rgb[0]
    np.testing.assert_array_equal(right, [255, 0, 0])
    assert left[1] > 200 and left[2] > 200 and left[0] < 50          # cyan
    assert down[0] > 200 and down[1] > 150 and down[2] < 50          # yellow-orange
    assert up[2] > 200 and up[1] < 50                                # blue-violet
    np.testing.assert_array_equal(still, [255, 255, 255])


def test_zero_flow_is_white_without_nan_warnings():
    with np.errstate(all="raise"):
        rgb = flowviz.flow_to_color(np.zeros((6, 7, 2), np.float32))
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 7, 3)
    assert (rgb == 255).all()


def test_nonfinite_flow_is_black_and_ignored_for_normalisation():
    flow = _uniform(3.0, 0.0)
    flow[0, 0] = (np.nan, 1.0)
    flow[0, 1] = (np.inf, 0.0)
    flow[0, 2] = (0.0, -np.inf)
    rgb = flowviz.flow_to_color(flow)
    assert (rgb[0, :3] == 0).all()
    # the finite pixels are normalised by their own max (3), so they are pure red
    np.testing.assert_array_equal(rgb[1, 1], [255, 0, 0])


def test_max_radius_controls_saturation():
    flow = _uniform(1.0, 0.0)
    half = flowviz.flow_to_color(flow, max_radius=2.0)[0, 0].astype(int)
    np.testing.assert_array_equal(half, [255, 127, 127])   # halfway from white to red
    beyond = flowviz.flow_to_color(flow, max_radius=0.5)[0, 0].astype(int)
    np.testing.assert_array_equal(beyond, [191, 0, 0])      # out of range: darkened ×0.75
    with pytest.raises(ValueError):
        flowviz.flow_to_color(flow, max_radius=float("nan"))
    with pytest.raises(ValueError):
        flowviz.flow_to_color(np.zeros((4, 4, 3)))


def test_legend_disc():
    legend = flowviz.colorwheel_legend(65)
    assert legend.shape == (65, 65, 3) and legend.dtype == np.uint8
    np.testing.assert_array_equal(legend[32, 32], [255, 255, 255])   # centre: still
    np.testing.assert_array_equal(legend[0, 0], [255, 255, 255])     # corner: background
    right = legend[32, 63].astype(int)
    assert right[0] > 200 and right[1] < 40 and right[2] < 40        # right edge red
    left = legend[32, 1].astype(int)
    assert left[0] < 40 and left[1] > 200 and left[2] > 200          # left edge cyan


def test_save_flow_grid(tmp_path):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)
    truth = rng.normal(size=(16, 20, 2)).astype(np.float32)
    rows = [[frame, np.zeros_like(truth), truth * 0.5, truth], [frame, None, truth, truth]]
    out = flowviz.save_flow_grid(rows, ["input", "zero", "half", "ground truth"], tmp_path / "sub" / "grid.png",
                                 row_labels=["a", "b"])
    assert out.is_file()
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 300
    # the legend disc (saturated colours) must be present in the bottom-right corner
    corner = image[-image.shape[0] // 6:, -image.shape[1] // 6:].astype(int)
    saturation = corner.max(axis=-1) - corner.min(axis=-1)
    assert (saturation > 150).sum() > 50
    with pytest.raises(ValueError):
        flowviz.save_flow_grid([[frame]], ["a", "b"], tmp_path / "bad.png")


def _random_flow(h: int = 7, w: int = 11, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(h, w, 2)) * 5).astype(np.float32)


def test_flo_roundtrip_ours_to_opencv(tmp_path):
    flow = _random_flow()
    path = flo.write_flo(tmp_path / "a.flo", flow)
    assert path.stat().st_size == 12 + 8 * 7 * 11
    back = cv2.readOpticalFlow(str(path))
    assert back.shape == (7, 11, 2)
    np.testing.assert_array_equal(back, flow)
    np.testing.assert_array_equal(flo.read_flo(path), flow)


def test_flo_roundtrip_opencv_to_ours(tmp_path):
    flow = _random_flow(9, 4, seed=2)
    path = tmp_path / "b.flo"
    assert cv2.writeOpticalFlow(str(path), flow)
    back = flo.read_flo(path)
    assert back.dtype == np.float32 and back.shape == (9, 4, 2)
    np.testing.assert_array_equal(back, flow)
    assert list(tmp_path.iterdir()) == [path]   # no temporary left behind by either writer


def test_read_flo_rejects_bad_files(tmp_path):
    bad_magic = tmp_path / "bad.flo"
    bad_magic.write_bytes(b"NOPE" + np.array([1, 1], "<i4").tobytes() + b"\0" * 8)
    with pytest.raises(ValueError, match="not a .flo"):
        flo.read_flo(bad_magic)
    path = flo.write_flo(tmp_path / "t.flo", _random_flow())
    truncated = tmp_path / "trunc.flo"
    truncated.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="bytes"):
        flo.read_flo(truncated)
