"""Motion potential (Im2Flow §4.3): how much a still image looks like it is about to move.

Score of an image = the predicted flow magnitude summed over the foreground,
divided by the foreground's area, i.e. the mean predicted motion (pixels)
per foreground pixel. Dividing by the area is the paper's normalisation: a
large object is not scored higher for being large, only for moving more.
An image whose foreground mask is empty is scored over all its pixels (and
flagged), so no image drops out of the ranking.

The same score on the ground-truth flow, and the Spearman rank correlation
between the two, say whether the ranking means anything on this dataset.
"""

from __future__ import annotations

import heapq
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from pipeline.atomic import atomic_path
from pipeline.viz import flow_to_color

log = logging.getLogger(__name__)


def motion_potential(flow: np.ndarray, fg_mask: np.ndarray | None) -> tuple[float, bool]:
    """(H, W, 2) flow and (H, W) bool foreground -> (score in px, whether the mask was used)."""
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0.0)
    if fg_mask is not None and fg_mask.any():
        return float(magnitude[fg_mask].sum() / fg_mask.sum()), True
    return float(magnitude.mean()), False


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None for fewer than 3 values or a constant input."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3:
        return None
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    for value in np.unique(x):  # ties share their mean rank
        tied = x == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


class MotionPotentialRanking:
    """Motion potential scored one test image at a time; keeps every image's score (a few numbers
    each) and, for the figure, the frame and predicted flow of the ``keep`` highest and lowest only."""

    def __init__(self, keep: int = 4):
        self.keep = keep
        self.rows: list[dict[str, Any]] = []
        # min-heaps of (key, tie-break, image, frame, flow) holding the `keep` largest keys; the keys
        # follow the ranking's order (-score, image): the top keeps (score, -image), the bottom (-score, image)
        self._top: list[tuple] = []
        self._bottom: list[tuple] = []

    def add(self, image: int, frame: np.ndarray, predicted: np.ndarray, fg_mask: np.ndarray,
            true_flow: np.ndarray | None = None, meta: dict[str, Any] | None = None) -> None:
        score, used_fg = motion_potential(predicted, fg_mask)
        row: dict[str, Any] = {"image": image, **(meta or {}), "score": score,
                               "fg_fraction": float(fg_mask.mean()), "fg_used": used_fg}
        if true_flow is not None:
            row["true_score"] = motion_potential(np.nan_to_num(true_flow), fg_mask)[0]
        self.rows.append(row)
        for heap, key in ((self._top, (score, -image)), (self._bottom, (-score, image))):
            if not self.keep or (len(heap) == self.keep and key <= heap[0][:2]):
                continue
            # copies: a view would keep the caller's whole batch alive
            entry = (*key, image, None if frame is None else frame.copy(), predicted.copy())
            if len(heap) < self.keep:
                heapq.heappush(heap, entry)
            else:
                heapq.heapreplace(heap, entry)

    def ranked(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(rows ranked by score, highest first, ties by image; summary with the Spearman correlation)."""
        rows = sorted(self.rows, key=lambda r: (-r["score"], r["image"]))
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank
        summary: dict[str, Any] = {"n_images": len(rows), "n_without_foreground": sum(not r["fg_used"] for r in rows)}
        if rows and "true_score" in rows[0]:
            summary["spearman_vs_truth"] = spearman([r["score"] for r in rows], [r["true_score"] for r in rows])
        return rows, summary

    def pictures(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """image -> (frame, predicted flow) for the kept highest and lowest images."""
        return {e[2]: (e[3], e[4]) for e in self._top + self._bottom}


def score_images(
    predicted: np.ndarray,
    fg_masks: np.ndarray,
    true_flows: np.ndarray | None = None,
    meta: Sequence[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(N, H, W, 2) predicted flow, (N, H, W) masks [, true flow, per-image metadata] held in memory ->
    (rows ranked by score, highest first; summary with the Spearman correlation to the truth)."""
    ranking = MotionPotentialRanking(keep=0)
    for i in range(len(predicted)):
        ranking.add(i, None, predicted[i], fg_masks[i], None if true_flows is None else true_flows[i],
                    None if meta is None else dict(meta[i]))
    return ranking.ranked()


def save_ranked_figure(
    rows: Sequence[dict[str, Any]],
    pictures: dict[int, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike,
    n: int = 4,
) -> Path:
    """Two blocks of ``n`` images, the highest and the lowest scored, each with its predicted
    flow (one colour scale for the whole figure, so brightness compares across images).
    ``pictures``: image -> (frame, predicted flow) for at least those images."""
    n = max(1, min(n, len(rows) // 2 if len(rows) >= 2 else len(rows)))
    blocks = [("highest motion potential", list(rows[:n])), ("lowest motion potential", list(rows[-n:]))]
    picked = [pictures[r["image"]][1] for _, block in blocks for r in block]
    magnitudes = np.hypot(np.stack(picked)[..., 0], np.stack(picked)[..., 1])
    radius = float(magnitudes.max()) if magnitudes.size and magnitudes.max() > 0 else 1.0
    fig = Figure(figsize=(1.6 * n + 0.6, 7.4), dpi=100, layout="constrained")
    for sub, (title, block) in zip(fig.subfigures(2, 1, hspace=0.04), blocks):
        sub.suptitle(title, fontsize=11, weight="bold")
        axes = sub.subplots(2, n, squeeze=False)
        for c in range(n):
            _draw_column(axes[0][c], axes[1][c], block[c] if c < len(block) else None, pictures, radius)
        axes[0][0].set_ylabel("image", fontsize=9)
        axes[1][0].set_ylabel("predicted flow", fontsize=9)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    log.info("wrote motion-potential figure %s", path)
    return path


def _draw_column(top, bottom, row: dict[str, Any] | None, pictures, radius: float) -> None:
    for ax in (top, bottom):
        ax.set_xticks([])
        ax.set_yticks([])
        if row is None:
            ax.axis("off")
    if row is None:
        return
    frame, flow = pictures[row["image"]]
    top.imshow(frame, interpolation="nearest")
    top.set_title(f"#{row['rank']}: {row['score']:.2f} px\n{row.get('label_name', '')}", fontsize=8)
    bottom.imshow(flow_to_color(flow, radius), interpolation="nearest")
