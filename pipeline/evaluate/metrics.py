"""Flow-prediction metrics (Im2Flow Table 1): EPE, DS, OS over all / Canny-edge / foreground pixels.

The definitions follow the only public code for them (DejaVu, see
``reference/facts.md``): per image, the metric is averaged over the region's
pixels; the table value is the mean over images. DS is the cosine between
the true and the predicted vector and OS its absolute value, with 1e-10 added
inside each norm's square root so that a zero vector gives 0, never NaN.

Regions:

* ``all``: every pixel with a finite ground truth;
* ``canny``: grey -> 3×3 box blur -> Canny(50, 150, aperture 3) edge pixels;
* ``fg``: a foreground mask, user-supplied or, by default, OpenCV contrib's
  static spectral-residual saliency thresholded with Otsu, closed and
  hole-filled (named by
  :data:`FOREGROUND_METHOD` so that tables say which mask they used).

An image whose region is empty (a flat frame has no Canny edges) is skipped
for that region and counted out of that column's ``n_images``; it never turns
the table into NaN. Pixels whose ground truth is NaN/Inf (unknown flow) are
left out of every region.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from pipeline.atomic import atomic_path

log = logging.getLogger(__name__)

NORM_EPS = 1e-10  # inside the norms' square roots, as DejaVu codes it
METRICS = ("EPE", "DS", "OS")
REGIONS = ("all", "canny", "fg")
REGION_TITLES = {"all": "all", "canny": "Canny", "fg": "FG"}
CANNY_LOW, CANNY_HIGH, CANNY_APERTURE, CANNY_BLUR = 50, 150, 3, 3

SALIENCY_METHODS = ("spectral_residual", "fine_grained")
DEFAULT_SALIENCY = "spectral_residual"
FG_CLOSE_FRACTION = 0.1
FOREGROUND_METHOD = "opencv-saliency-spectral-residual+otsu+close+fill"
USER_FOREGROUND = "user-supplied"


# ----------------------------------------------------------------------------- per-pixel metrics

def endpoint_error(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(..., 2) true and predicted flow -> (...) Euclidean distance ‖t − p‖ in pixels."""
    true, pred = _pair(true, pred)
    return np.sqrt(np.sum((true - pred) ** 2, axis=-1))


def direction_similarity(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(..., 2) flows -> (...) DS = t·p / (√(‖t‖² + 1e-10) · √(‖p‖² + 1e-10)), in [-1, 1]."""
    true, pred = _pair(true, pred)
    dot = np.sum(true * pred, axis=-1)
    norm_t = np.sqrt(np.sum(true ** 2, axis=-1) + NORM_EPS)
    norm_p = np.sqrt(np.sum(pred ** 2, axis=-1) + NORM_EPS)
    return dot / (norm_t * norm_p)


def orientation_similarity(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(..., 2) flows -> (...) OS = |DS|: the line of motion, sign ignored."""
    return np.abs(direction_similarity(true, pred))


def _pair(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(true, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if true.shape != pred.shape or true.shape[-1:] != (2,):
        raise ValueError(f"true and predicted flow must share a (..., 2) shape, got {true.shape} and {pred.shape}")
    return true, pred


# ----------------------------------------------------------------------------- masks

def canny_mask(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB (or (H, W) grey) frame -> (H, W) bool edge mask.

    grey -> 3×3 box blur -> Canny(50, 150, aperture 3), as DejaVu's evaluation does.
    """
    grey = _grey(frame)
    blurred = cv2.blur(grey, (CANNY_BLUR, CANNY_BLUR))
    return cv2.Canny(blurred, CANNY_LOW, CANNY_HIGH, apertureSize=CANNY_APERTURE) > 0


def foreground_mask(frame: np.ndarray, method: str = DEFAULT_SALIENCY) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame -> (H, W) bool foreground mask, deterministic and offline.

    The paper's FG column uses masks we cannot get offline; a static saliency
    map (OpenCV contrib, spectral residual by default, or fine-grained)
    thresholded by Otsu is a stand-in that needs no weights. Spectral residual
    lights up an object's outline more than its inside, so the binary map is
    closed (elliptic kernel, a tenth of the short side) and its holes filled.
    A flat saliency map gives an empty mask (the image is then skipped for ``fg``).
    """
    frame = _rgb(frame)
    if method == "spectral_residual":
        saliency = cv2.saliency.StaticSaliencySpectralResidual_create()
    elif method == "fine_grained":
        saliency = cv2.saliency.StaticSaliencyFineGrained_create()
    else:
        raise ValueError(f"unknown saliency method {method!r}; known: {SALIENCY_METHODS}")
    ok, smap = saliency.computeSaliency(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if not ok or smap is None:
        raise RuntimeError(f"OpenCV {method} saliency failed on a frame of shape {frame.shape}")
    smap = np.nan_to_num(np.asarray(smap, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(smap.min()), float(smap.max())
    if hi - lo <= 1e-6:
        return np.zeros(frame.shape[:2], bool)
    scaled = np.round((smap - lo) / (hi - lo) * 255.0).astype(np.uint8)
    _, binary = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    k = max(3, int(round(FG_CLOSE_FRACTION * min(frame.shape[:2]))) | 1)
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return _fill_holes(binary > 0)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> the same with every background component not touching the border filled."""
    _, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    holes = ~mask & ~np.isin(labels, border)
    return mask | holes


def foreground_method_name(method: str = DEFAULT_SALIENCY) -> str:
    """The name a table prints for the automatic foreground mask of ``method``."""
    return f"opencv-saliency-{method.replace('_', '-')}+otsu+close+fill"


def _grey(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        return np.ascontiguousarray(frame, np.uint8)
    return cv2.cvtColor(_rgb(frame), cv2.COLOR_RGB2GRAY)


def _rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
    return np.ascontiguousarray(frame)


# ----------------------------------------------------------------------------- evaluation

def image_metrics(true: np.ndarray, pred: np.ndarray, masks: Mapping[str, np.ndarray]) -> dict[str, float | int | None]:
    """One image: (H, W, 2) true and predicted flow, region -> (H, W) bool mask ->
    ``{"EPE_all": ..., "DS_canny": ..., "n_fg": pixel count, ...}``; None where the region is empty."""
    t, p = _pair(true, pred)
    tu, tv, pu, pv = t[..., 0], t[..., 1], p[..., 0], p[..., 1]
    # the definitions of endpoint_error and direction_similarity, on the two channels directly
    # (a whole test set goes through here once per method and treatment)
    epe = np.hypot(tu - pu, tv - pv)
    ds = (tu * pu + tv * pv) / (np.sqrt(tu * tu + tv * tv + NORM_EPS) * np.sqrt(pu * pu + pv * pv + NORM_EPS))
    per_pixel = {"EPE": epe, "DS": ds, "OS": np.abs(ds)}
    out: dict[str, float | int | None] = {}
    for region, mask in masks.items():
        n = int(np.count_nonzero(mask))
        out[f"n_{region}"] = n
        for name, values in per_pixel.items():
            out[f"{name}_{region}"] = float(values[mask].mean()) if n else None
    return out


def region_masks(frame: np.ndarray, true_flow: np.ndarray, fg_mask: np.ndarray) -> dict[str, np.ndarray]:
    """The three regions of one image, each restricted to pixels with a finite ground truth."""
    valid = np.isfinite(true_flow).all(axis=-1)
    return {"all": valid, "canny": canny_mask(frame) & valid, "fg": np.asarray(fg_mask, bool) & valid}


class TableAccumulator:
    """Table-1 rows built one image at a time: per method, the running mean over images of each
    per-image metric (an image with an empty region is left out of that column)."""

    def __init__(self, fg_name: str = USER_FOREGROUND):
        self.fg_name = fg_name
        self._sums: dict[str, dict[str, float]] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self.n_images: dict[str, int] = {}

    def add(self, method: str, row: Mapping[str, Any]) -> None:
        sums, counts = self._sums.setdefault(method, {}), self._counts.setdefault(method, {})
        self.n_images[method] = self.n_images.get(method, 0) + 1
        for column in table_columns():
            if row.get(column) is not None:
                sums[column] = sums.get(column, 0.0) + float(row[column])
                counts[column] = counts.get(column, 0) + 1
        for region in REGIONS:
            if row.get(f"n_{region}", 0) > 0:
                counts[f"images_{region}"] = counts.get(f"images_{region}", 0) + 1

    def rows(self) -> list[dict[str, Any]]:
        """One row per method, in the order first seen: ``EPE_all`` … ``OS_fg``, ``n_images_<region>``, ``fg_mask``."""
        table = []
        for method, sums in self._sums.items():
            counts = self._counts[method]
            row: dict[str, Any] = {"method": method}
            row.update({c: (sums[c] / counts[c] if counts.get(c) else None) for c in table_columns()})
            row.update({f"n_images_{r}": counts.get(f"images_{r}", 0) for r in REGIONS})
            row["fg_mask"] = self.fg_name
            skipped = {r: self.n_images[method] - row[f"n_images_{r}"] for r in REGIONS
                       if row[f"n_images_{r}"] < self.n_images[method]}
            if skipped:
                log.info("%s: images skipped for empty regions: %s", method, skipped)
            table.append(row)
        return table


def evaluate_predictions(
    frames: np.ndarray,
    true_flows: np.ndarray,
    predicted: Mapping[str, np.ndarray],
    fg_masks: np.ndarray | None = None,
    saliency_method: str = DEFAULT_SALIENCY,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Table-1-style evaluation of several methods on the same test frames held in memory.

    frames (N, H, W, 3) uint8 RGB; true_flows (N, H, W, 2); predicted maps a
    method name to (N, H, W, 2) raw flow; fg_masks (N, H, W) bool or None
    (then :func:`foreground_mask` makes them). Returns ``(table_rows,
    per_image_rows)`` (see :class:`TableAccumulator`; one per-image row per
    (method, image)). Masks are computed once and shared by all methods, so every
    method is scored on the same pixels.
    """
    frames, true_flows = _check_set(frames, true_flows, predicted)
    n, h, w = frames.shape[:3]
    if fg_masks is None:
        fg_masks = np.stack([foreground_mask(f, saliency_method) for f in frames]) if n else np.zeros((0, h, w), bool)
        fg_name = foreground_method_name(saliency_method)
    else:
        fg_masks = np.asarray(fg_masks, dtype=bool)
        if fg_masks.shape != (n, h, w):
            raise ValueError(f"fg_masks must be {(n, h, w)}, got {fg_masks.shape}")
        fg_name = USER_FOREGROUND
    masks = [region_masks(frames[i], true_flows[i], fg_masks[i]) for i in range(n)]
    truth = np.where(np.isfinite(true_flows).all(axis=-1, keepdims=True), true_flows, 0.0)
    table, per_image = TableAccumulator(fg_name), []
    for name, flows in predicted.items():
        for i in range(n):
            row = {"method": name, "image": i, **image_metrics(truth[i], np.asarray(flows[i], np.float32), masks[i])}
            table.add(name, row)
            per_image.append(row)
    return table.rows(), per_image


def _check_set(frames: np.ndarray, true_flows: np.ndarray, predicted: Mapping[str, np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Shapes agree, predictions are finite; ValueError naming the method otherwise."""
    frames = np.asarray(frames)
    true_flows = np.asarray(true_flows, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    n, h, w = frames.shape[:3]
    if true_flows.shape != (n, h, w, 2):
        raise ValueError(f"true_flows must be {(n, h, w, 2)}, got {true_flows.shape}")
    for name, flows in predicted.items():
        flows = np.asarray(flows)
        if flows.shape != (n, h, w, 2):
            raise ValueError(f"predictions of {name!r} must be {(n, h, w, 2)}, got {flows.shape}")
        if not np.isfinite(flows).all():
            raise ValueError(f"predictions of {name!r} contain NaN or Inf")
    return frames, true_flows


# ----------------------------------------------------------------------------- writers

def table_columns() -> list[str]:
    """The metric columns of a table row, in Table 1's order (metric-major, region-minor)."""
    return [f"{m}_{r}" for m in METRICS for r in REGIONS]


def write_rows_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write table or per-image rows to CSV (columns in first-seen order, None -> empty cell)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(csv_row(row, columns) for row in rows)
    return path


def csv_row(row: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """A row as CSV cells: None -> empty, floats written so that they round-trip exactly."""
    return {k: ("" if row.get(k) is None else _csv_value(row.get(k))) for k in columns}


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return value


def format_table_markdown(rows: Sequence[Mapping[str, Any]], digits: int = 3) -> str:
    """Table 1 as Markdown: one line per method, EPE (lower is better) then DS and OS
    (higher is better), each over all / Canny / FG pixels; "–" where no image had the region."""
    header = ["Method"] + [f"{m} {REGION_TITLES[r]}" for m in METRICS for r in REGIONS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        cells = [str(row["method"])]
        for column in table_columns():
            value = row.get(column)
            cells.append("–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    if rows:
        n_images = {r: rows[0].get(f"n_images_{r}") for r in REGIONS}
        notes.append("Images per column: " + ", ".join(f"{REGION_TITLES[r]} {n_images[r]}" for r in REGIONS) + ".")
        if rows[0].get("fg_mask"):
            notes.append(f"Foreground mask: {rows[0]['fg_mask']}.")
    notes.append("EPE in pixels (lower is better); DS and OS are cosines (higher is better).")
    return "\n".join(lines) + "\n\n" + " ".join(notes) + "\n"
