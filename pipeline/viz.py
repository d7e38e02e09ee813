"""Pictures of optical flow: the Middlebury colour wheel, its legend, figure grids.

The colour coding is the one of Baker et al. (Middlebury flow benchmark), the
convention every flow paper's figures use, so that our pictures read the same
way as theirs: hue = direction, saturation = magnitude, white = no motion,
pure right motion = red. Raw flow is ``(H, W, 2)`` float (u, v) with image y
pointing down, as everywhere in the pipeline.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

# Middlebury colour-wheel segment lengths (Baker et al.; flowToColor / computeColor).
RY, YG, GC, CB, BM, MR = 15, 6, 4, 11, 13, 6
_UNKNOWN_FLOW_THRESHOLD = 1e9  # Middlebury's marker for unknown flow


# Red -> yellow -> green -> cyan -> blue -> magenta -> red: per segment, its length, the channel
# held at 255 and the channel that ramps up (or down) along it.
_SEGMENTS = ((RY, 0, 1, True), (YG, 1, 0, False), (GC, 1, 2, True), (CB, 2, 1, False), (BM, 2, 0, True),
             (MR, 0, 2, False))


def make_colorwheel() -> np.ndarray:
    """The 55 Middlebury wheel colours, (55, 3) float64 RGB in [0, 255], red first."""
    wheel = np.zeros((sum(s[0] for s in _SEGMENTS), 3))
    col = 0
    for n, held, ramp, rising in _SEGMENTS:
        steps = np.floor(255 * np.arange(n) / n)
        wheel[col:col + n, held] = 255
        wheel[col:col + n, ramp] = steps if rising else 255 - steps
        col += n
    return wheel


def flow_to_color(flow: np.ndarray, max_radius: float | None = None) -> np.ndarray:
    """(H, W, 2) raw flow (u, v) -> (H, W, 3) uint8 RGB, Middlebury colour coding.

    ``max_radius`` is the magnitude drawn fully saturated; vectors beyond it are
    drawn darker (×0.75, as in Middlebury's code). ``None`` uses the flow's own
    largest finite magnitude, so one picture spans the whole wheel; pass a shared
    value to compare several flows. All-zero flow is white (no division by
    zero); NaN, Inf and Middlebury's "unknown" (|u| or |v| > 1e9) are black.
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
    u, v = flow[..., 0], flow[..., 1]
    unknown = ~np.isfinite(u) | ~np.isfinite(v) | (np.abs(u) > _UNKNOWN_FLOW_THRESHOLD) | (np.abs(v) > _UNKNOWN_FLOW_THRESHOLD)
    u = np.where(unknown, 0.0, u)
    v = np.where(unknown, 0.0, v)
    radius = np.hypot(u, v)
    if max_radius is None:
        max_radius = float(radius.max()) if radius.size else 0.0
    if not np.isfinite(max_radius) or max_radius < 0:
        raise ValueError(f"max_radius must be a finite non-negative number, got {max_radius}")
    scale = max_radius if max_radius > 0 else 1.0
    rad = radius / scale

    wheel = make_colorwheel() / 255.0
    ncols = wheel.shape[0]
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]; right motion -> ±1 -> red end of the wheel
    fk = (angle + 1.0) / 2.0 * (ncols - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = (k0 + 1) % ncols
    f = (fk - k0)[..., None]
    col = (1.0 - f) * wheel[k0] + f * wheel[k1]
    inside = (rad <= 1.0)[..., None]
    col = np.where(inside, 1.0 - rad[..., None] * (1.0 - col), col * 0.75)
    col[unknown] = 0.0
    return np.floor(255.0 * np.clip(col, 0.0, 1.0)).astype(np.uint8)


def colorwheel_legend(size: int = 128, background: int = 255) -> np.ndarray:
    """(size, size, 3) uint8 legend: a disc whose pixel at offset (dx, dy) from the
    centre has the colour of flow (dx, dy) (y down), full radius = full saturation.

    Outside the disc is ``background`` grey level (white by default).
    """
    if size < 3:
        raise ValueError(f"legend size must be at least 3 px, got {size}")
    centre = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    flow = np.stack([xs - centre, ys - centre], axis=-1)
    radius = size / 2.0
    legend = flow_to_color(flow, max_radius=radius)
    outside = np.hypot(flow[..., 0], flow[..., 1]) > radius
    legend[outside] = background
    return legend


def _cell_to_rgb(cell: np.ndarray | None, max_radius: float | None) -> np.ndarray | None:
    """A grid cell as RGB: (H, W, 3) images pass through, (H, W, 2) flows get colour-coded."""
    if cell is None:
        return None
    cell = np.asarray(cell)
    if cell.ndim == 3 and cell.shape[-1] == 2:
        return flow_to_color(cell, max_radius)
    if cell.ndim == 2 or (cell.ndim == 3 and cell.shape[-1] in (3, 4)):
        return cell
    raise ValueError(f"grid cells must be (H, W, 3) images or (H, W, 2) flows, got shape {cell.shape}")


def _row_max_radius(row: Sequence[np.ndarray | None]) -> float | None:
    """Largest finite magnitude over the flow cells of a row (one scale per row)."""
    radii = []
    for cell in row:
        if cell is not None and np.ndim(cell) == 3 and np.shape(cell)[-1] == 2:
            mag = np.hypot(*np.moveaxis(np.asarray(cell, np.float64), -1, 0))
            mag = mag[np.isfinite(mag) & (mag < _UNKNOWN_FLOW_THRESHOLD)]
            if mag.size:
                radii.append(float(mag.max()))
    return max(radii) if radii else None


def save_flow_grid(
    rows: Sequence[Sequence[np.ndarray | None]],
    column_titles: Sequence[str],
    path: str | os.PathLike,
    row_labels: Sequence[str] | None = None,
    max_radius: float | None = None,
    legend: bool = True,
    cell_inches: float = 1.6,
    dpi: int = 100,
) -> Path:
    """Draw a grid of pictures (e.g. input | method A | method B | ground truth) to a PNG.

    Each cell is an (H, W, 3) uint8 image, an (H, W, 2) raw flow (drawn with the
    colour wheel) or None (left blank). Flows in a row share one scale, the
    row's largest magnitude, unless ``max_radius`` fixes one for the whole
    figure, so that a method is never flattered by its own normalisation. The
    wheel legend sits in the bottom-right corner. Uses matplotlib's Figure
    directly (Agg canvas), never pyplot, so no global backend state is touched.
    """
    if not rows:
        raise ValueError("save_flow_grid needs at least one row")
    ncols = len(column_titles)
    if any(len(r) != ncols for r in rows):
        raise ValueError(f"every row must have {ncols} cells (one per column title)")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError("row_labels must have one label per row")
    nrows = len(rows)
    legend_rows = 0.5 if legend else 0.0
    fig = Figure(figsize=(cell_inches * ncols, cell_inches * (nrows + legend_rows) + 0.3), dpi=dpi)
    bottom = (cell_inches * legend_rows) / (cell_inches * (nrows + legend_rows) + 0.3)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.subplots_adjust(left=0.08 if row_labels else 0.01, right=0.99, top=1 - 0.3 / fig.get_figheight(),
                        bottom=bottom + 0.01, wspace=0.05, hspace=0.05)
    for r, row in enumerate(rows):
        radius = max_radius if max_radius is not None else _row_max_radius(row)
        for c, cell in enumerate(row):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            rgb = _cell_to_rgb(cell, radius)
            if rgb is not None:
                ax.imshow(rgb, cmap="gray" if rgb.ndim == 2 else None, interpolation="nearest")
            else:
                ax.axis("off")
            if r == 0:
                ax.set_title(column_titles[c], fontsize=9)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], fontsize=8)
    if legend:
        height = legend_rows * cell_inches / fig.get_figheight() * 0.95
        width = height * fig.get_figheight() / fig.get_figwidth()
        lax = fig.add_axes((0.99 - width, 0.005, width, height))
        lax.imshow(colorwheel_legend(96), interpolation="bilinear")
        lax.set_xticks([])
        lax.set_yticks([])
        for side in lax.spines.values():
            side.set_visible(False)
        fig.text(0.98 - width, 0.005 + height / 2, "flow direction\n(white = still)", ha="right", va="center", fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    log.info("wrote flow grid %s (%d rows x %d columns)", path, nrows, ncols)
    return path
