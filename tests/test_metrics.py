"""EPE / DS / OS as DejaVu codes them, the Canny and foreground masks, the Table-1 evaluation and writers."""

from __future__ import annotations

import csv
import math

import cv2
import numpy as np
import pytest
import skimage.data

from pipeline.evaluate import metrics


def _vec(*pairs: tuple[float, float]) -> np.ndarray:
    return np.array(pairs, np.float32)


def test_per_pixel_values_by_hand():
    true = _vec((3, 4), (1, 0), (1, 0), (0, 0), (0, 0), (2, 2))
    pred = _vec((0, 0), (-2, 0), (0, 5), (0, 0), (1, 1), (1, 1))
    np.testing.assert_allclose(metrics.endpoint_error(true, pred), [5, 3, math.hypot(1, 5), 0, math.sqrt(2), math.sqrt(2)],
                               rtol=1e-6)
    ds = metrics.direction_similarity(true, pred)
    assert np.isfinite(ds).all()
    np.testing.assert_allclose(ds, [0, -1, 0, 0, 0, 1], atol=1e-6)
    os_ = metrics.orientation_similarity(true, pred)
    np.testing.assert_allclose(os_, [0, 1, 0, 0, 0, 1], atol=1e-6)
    # 1e-10 inside the square roots: a tiny but non-zero vector is not a unit vector
    tiny = metrics.direction_similarity(_vec((1e-5, 0)), _vec((1, 0)))
    np.testing.assert_allclose(tiny, [1e-5 / math.sqrt(1e-10 + 1e-10)], rtol=1e-4)
    with pytest.raises(ValueError):
        metrics.endpoint_error(np.zeros((2, 2)), np.zeros((3, 2)))


def test_random_vectors_give_ds_zero_and_os_two_over_pi():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(400_000, 2))
    pred = rng.normal(size=(400_000, 2))
    assert abs(metrics.direction_similarity(true, pred).mean()) < 0.005
    assert abs(metrics.orientation_similarity(true, pred).mean() - 2 / math.pi) < 0.005


def test_canny_mask_is_opencv_pipeline_on_a_real_image():
    image = skimage.data.astronaut()  # RGB uint8
    mask = metrics.canny_mask(image)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    expected = cv2.Canny(cv2.blur(grey, (3, 3)), 50, 150, apertureSize=3) > 0
    assert mask.dtype == bool and mask.shape == image.shape[:2]
    np.testing.assert_array_equal(mask, expected)
    assert 0.01 < mask.mean() < 0.3
    unblurred = cv2.Canny(grey, 50, 150, apertureSize=3) > 0
    assert (mask != unblurred).sum() > 1000  # the blur step matters, so it is really there
    np.testing.assert_array_equal(metrics.canny_mask(grey), expected)  # grey input accepted too


def test_foreground_mask_finds_a_disc_and_is_deterministic():
    frame = np.full((64, 64, 3), 40, np.uint8)
    cv2.circle(frame, (20, 40), 10, (200, 50, 50), -1, lineType=cv2.LINE_AA)
    disc = np.zeros((64, 64), np.uint8)
    cv2.circle(disc, (20, 40), 10, 1, -1)
    disc = disc > 0
    mask = metrics.foreground_mask(frame)
    assert mask.dtype == bool and mask.shape == (64, 64)
    iou = (mask & disc).sum() / (mask | disc).sum()
    assert iou > 0.5
    assert not mask[:, 45:].any()  # the empty right side is background
    np.testing.assert_array_equal(mask, metrics.foreground_mask(frame.copy()))
    assert metrics.foreground_mask(frame, "fine_grained").shape == (64, 64)
    assert metrics.FOREGROUND_METHOD == metrics.foreground_method_name()
    with pytest.raises(ValueError):
        metrics.foreground_mask(frame, "magic")


def _toy_set():
    """Two 8×8 frames: one with a bright square (Canny edges), one flat (no edges)."""
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    frames[0, 2:6, 2:6] = 255
    truth = np.zeros((2, 8, 8, 2), np.float32)
    truth[0, ..., 0] = 3.0
    truth[0, ..., 1] = 4.0       # image 0: every vector (3, 4), |t| = 5
    truth[1, ..., 0] = 1.0       # image 1: every vector (1, 0)
    fg = np.zeros((2, 8, 8), bool)
    fg[0, 2:6, 2:6] = True       # image 1 has an empty foreground
    return frames, truth, fg


def test_evaluate_predictions_by_hand():
    frames, truth, fg = _toy_set()
    pred_b = np.zeros_like(truth)
    pred_b[1, ..., 0] = -1.0     # image 1: exactly opposite, image 0: zero
    pred_b[0, :4, :, 0] = 3.0
    pred_b[0, :4, :, 1] = 4.0    # image 0: top half perfect
    table, per_image = metrics.evaluate_predictions(frames, truth, {"zero": np.zeros_like(truth), "b": pred_b},
                                                    fg_masks=fg)
    assert [r["method"] for r in table] == ["zero", "b"]
    zero, b = table
    # zero flow: EPE image 0 = 5, image 1 = 1 -> mean 3; DS = OS = 0
    assert zero["EPE_all"] == pytest.approx(3.0)
    assert zero["DS_all"] == pytest.approx(0.0) and zero["OS_all"] == pytest.approx(0.0)
    # foreground exists in image 0 only: image 1 is skipped, not NaN
    assert zero["EPE_fg"] == pytest.approx(5.0) and zero["n_images_fg"] == 1 and zero["n_images_all"] == 2
    # flat image 1 has no Canny edges: skipped for that column
    assert zero["n_images_canny"] == 1 and zero["EPE_canny"] == pytest.approx(5.0)
    # method b: image 0 EPE mean 2.5 (half 0, half 5), DS 0.5; image 1 EPE 2, DS -1, OS 1
    assert b["EPE_all"] == pytest.approx((2.5 + 2.0) / 2)
    assert b["DS_all"] == pytest.approx((0.5 + -1.0) / 2, abs=1e-6)
    assert b["OS_all"] == pytest.approx((0.5 + 1.0) / 2, abs=1e-6)
    # the square's rows 2-3 are correct, rows 4-5 are zero: half right inside the foreground
    assert b["EPE_fg"] == pytest.approx(2.5) and b["DS_fg"] == pytest.approx(0.5, abs=1e-6)
    assert b["fg_mask"] == metrics.USER_FOREGROUND
    for row in table:
        for column in metrics.table_columns():
            assert row[column] is not None and math.isfinite(row[column])
    assert len(per_image) == 4
    row_b1 = next(r for r in per_image if r["method"] == "b" and r["image"] == 1)
    assert row_b1["EPE_fg"] is None and row_b1["n_fg"] == 0 and row_b1["DS_all"] == pytest.approx(-1.0, abs=1e-6)


def test_unknown_ground_truth_pixels_are_left_out():
    frames, truth, fg = _toy_set()
    truth[1, 0, 0] = (np.inf, np.nan)
    table, per_image = metrics.evaluate_predictions(frames, truth, {"zero": np.zeros_like(truth)}, fg_masks=fg)
    assert table[0]["EPE_all"] == pytest.approx(3.0)
    assert per_image[1]["n_all"] == 63


def test_evaluate_rejects_bad_inputs_and_defaults_to_saliency_masks():
    frames, truth, _ = _toy_set()
    with pytest.raises(ValueError, match="'bad'"):
        metrics.evaluate_predictions(frames, truth, {"bad": np.zeros((2, 8, 7, 2))})
    nan_pred = np.zeros_like(truth)
    nan_pred[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metrics.evaluate_predictions(frames, truth, {"nan": nan_pred})
    table, _ = metrics.evaluate_predictions(frames, truth, {"zero": np.zeros_like(truth)})
    assert table[0]["fg_mask"] == metrics.FOREGROUND_METHOD


def test_writers(tmp_path):
    frames, truth, fg = _toy_set()
    table, per_image = metrics.evaluate_predictions(frames, truth, {"zero": np.zeros_like(truth)}, fg_masks=fg)
    table.append({"method": "none", **{c: None for c in metrics.table_columns()}})
    csv_path = metrics.write_rows_csv(table, tmp_path / "out" / "table.csv")
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["method"] == "zero" and float(rows[0]["EPE_all"]) == table[0]["EPE_all"]
    assert rows[1]["EPE_all"] == ""
    metrics.write_rows_csv(per_image, tmp_path / "per_image.csv")
    with open(tmp_path / "per_image.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 2
    md = metrics.format_table_markdown(table)
    lines = md.splitlines()
    assert lines[0].startswith("| Method | EPE all | EPE Canny | EPE FG | DS all")
    assert "| zero | 3.000 | 5.000 | 5.000 | 0.000 |" in md
    assert "| none | – |" in md
    assert metrics.USER_FOREGROUND in md
    assert not list(tmp_path.glob("**/.*.tmp"))
