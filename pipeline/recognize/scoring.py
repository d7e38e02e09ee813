"""Recognition scores: accuracy, (mean) average precision, and late fusion of two streams."""

from __future__ import annotations

import numpy as np


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float((np.argmax(scores, axis=1) == labels).mean()) if len(labels) else float("nan")


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Non-interpolated AP: the mean, over positives, of the precision at each positive's rank.

    Ranking is by descending score; ties keep the input order (a stable sort).
    NaN when there is no positive.
    """
    positives = np.asarray(positives, bool)
    if not positives.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    hits = positives[order]
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at[hits].mean())


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of the one-vs-rest AP."""
    aps = [average_precision(scores[:, c], labels == c) for c in range(scores.shape[1]) if (labels == c).any()]
    return float(np.mean(aps)) if aps else float("nan")


def fuse(p_a: np.ndarray, p_b: np.ndarray, weight: float) -> np.ndarray:
    """Late fusion of softmax scores: ``weight`` on the first stream."""
    return weight * p_a + (1.0 - weight) * p_b


def choose_fusion_weight(p_a: np.ndarray, p_b: np.ndarray, labels: np.ndarray, grid: list[float]) -> float:
    """The grid weight with the best validation accuracy; ties go to the best mAP, then nearest 0.5.
    An empty validation split is refused: a weight chosen on nothing would be reported as chosen."""
    if len(labels) == 0:
        raise ValueError("the validation split is empty: no fusion weight can be chosen")
    best, best_key = None, None
    for w in grid:
        fused = fuse(p_a, p_b, w)
        key = (accuracy(fused, labels), mean_average_precision(fused, labels), -abs(w - 0.5))
        if best_key is None or key > best_key:
            best, best_key = float(w), key
    return best
