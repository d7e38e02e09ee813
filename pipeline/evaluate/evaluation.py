"""Stage 8: flow-prediction evaluation against baselines (Im2Flow Table 1), and motion potential.

`im2flow evaluate` reads the train and test shards and a trained Im2Flow
checkpoint, fits the baselines (:mod:`pipeline.baselines`) on the training
frames, predicts every test frame with each method, and writes into ``--out``:

- ``table.csv`` / ``table.md``: methods × EPE / DS / OS × all / Canny / FG,
  with Im2Flow's margin over each baseline (all pixels) under the Markdown table;
- ``per_image.csv``: every method's metrics on every test image;
- ``examples.png``: input | each method | ground truth, colour-wheel coded,
  one flow scale per row, with the wheel's legend;
- ``motion_potential.csv`` / ``motion_potential.png``: the test images ranked by
  motion potential (:mod:`pipeline.motion_potential`);
- ``summary.json``: provenance: config, checkpoint, BatchNorm mode, baseline
  descriptions, image counts, margins, seconds per method.

BatchNorm at test time (``bn_mode``): ``eval`` uses the running statistics
learnt in training; ``train`` normalises each test batch by its own
statistics, as the pix2pix test script did. The other mode's all-pixel
scores are written to ``summary.json`` too, so the choice stays checked on
every run. Everything is seeded; one run gives the same table twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.evaluate import metrics as M
from pipeline.encoding import decode

log = logging.getLogger(__name__)

IM2FLOW = "Im2Flow"
BASELINE_TITLES = {
    "zero": "Zero flow",
    "mean": "Mean training flow",
    "nearest_neighbour": "Nearest neighbour",
    "codebook": "Codebook (Walker-style)",
}
DEFAULT_BASELINES = ("zero", "mean", "nearest_neighbour", "codebook")
OUTPUTS = ("table.csv", "table.md", "per_image.csv", "examples.png", "motion_potential.csv",
           "motion_potential.png", "summary.json")


@dataclass
class EvaluateConfig:
    """The `evaluate` slice of the config (see workflow/schemas/config.schema.yaml)."""

    baselines: list[str] = field(default_factory=lambda: list(DEFAULT_BASELINES))
    baseline_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_test_images: int | None = None  # None = every test frame; else a seeded subset
    max_train_images: int | None = None  # cap on the frames the baselines fit on
    foreground: str = M.DEFAULT_SALIENCY  # saliency method of the FG mask
    bn_mode: str = "eval"
    flip_average: bool = False  # average with the mirrored frame's prediction (pipeline.predict.hallucinate)
    batch_size: int = 32
    figure_rows: int = 6
    motion_potential_rows: int = 4
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        from pipeline.evaluate.baselines import BASELINES
        from pipeline.predict import BN_MODES

        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"evaluate.baselines: unknown {unknown}; known: {sorted(BASELINES)}")
        if self.bn_mode not in BN_MODES:
            raise ValueError(f"evaluate.bn_mode must be one of {BN_MODES}, got {self.bn_mode!r}")
        if self.foreground not in M.SALIENCY_METHODS:
            raise ValueError(f"evaluate.foreground must be one of {M.SALIENCY_METHODS}, got {self.foreground!r}")


@dataclass
class Split:
    """Raw test or training samples read from shards."""

    frames: np.ndarray  # (N, H, W, 3) uint8
    flows: np.ndarray  # (N, H, W, 2) float32 (u, v) px
    labels: np.ndarray  # (N,)
    video_ids: list[str]
    frame_index: list[int]
    class_names: list[str]
    magnitude_clip: float


def load_split(paths: Sequence[str | Path], limit: int | None = None, seed: int = 0) -> Split:
    """Read shards into memory (all samples, or a seeded subset of ``limit``, kept in shard order)."""
    from pipeline.data.dataset import ShardDataset

    ds = ShardDataset([str(p) for p in paths])
    index = np.arange(len(ds))
    if limit is not None and limit < len(ds):
        index = np.sort(np.random.default_rng(seed).choice(len(ds), size=limit, replace=False))
    frames, flows, labels, ids, fidx = [], [], [], [], []
    for i in index:
        frame, flow, label, vid, fi = ds.read(int(i))
        frames.append(frame)
        flows.append(decode(flow))
        labels.append(label)
        ids.append(vid)
        fidx.append(fi)
    h, w = ds.frame_size
    ds.close()
    return Split(
        frames=np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8),
        flows=np.stack(flows).astype(np.float32) if flows else np.zeros((0, h, w, 2), np.float32),
        labels=np.asarray(labels, np.int64), video_ids=ids, frame_index=fidx,
        class_names=list(ds.class_names), magnitude_clip=float(ds.magnitude_clip),
    )


def pick_figure_rows(labels: np.ndarray, n: int) -> list[int]:
    """Up to ``n`` test images for the figure, round-robin over classes (first unused image of each)."""
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    picked: list[int] = []
    while len(picked) < min(n, len(labels)):
        for label in sorted(by_class):
            if by_class[label] and len(picked) < n:
                # spread within a class: take from the middle of what is left
                members = by_class[label]
                picked.append(members.pop(len(members) // 2))
    return picked


def margins(table: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Im2Flow's lead over each baseline on all pixels: EPE (baseline − Im2Flow, positive =
    Im2Flow better) and DS (Im2Flow − baseline, positive = Im2Flow better)."""
    ours = next((r for r in table if r["method"] == IM2FLOW), None)
    out: dict[str, dict[str, float | None]] = {}
    if ours is None:
        return out
    for row in table:
        if row["method"] == IM2FLOW:
            continue
        epe = None if row["EPE_all"] is None or ours["EPE_all"] is None else row["EPE_all"] - ours["EPE_all"]
        ds = None if row["DS_all"] is None or ours["DS_all"] is None else ours["DS_all"] - row["DS_all"]
        out[row["method"]] = {"EPE_all": epe, "DS_all": ds}
    return out


def format_margins(m: dict[str, dict[str, float | None]]) -> str:
    """One Markdown line: how far Im2Flow is ahead of (or behind) each baseline, all pixels."""
    if not m:
        return ""
    parts = []
    for method, d in m.items():
        epe = "–" if d["EPE_all"] is None else f"{d['EPE_all']:+.3f} px"
        ds = "–" if d["DS_all"] is None else f"{d['DS_all']:+.3f}"
        parts.append(f"{method}: EPE {epe}, DS {ds}")
    beats = all(d["EPE_all"] is not None and d["EPE_all"] > 0 and d["DS_all"] is not None and d["DS_all"] > 0
                for d in m.values())
    verdict = "beats every baseline" if beats else "does NOT beat every baseline"
    return (f"Im2Flow's margin over each baseline, all pixels (positive = Im2Flow better): "
            + "; ".join(parts) + f". Im2Flow {verdict} on EPE and DS (all pixels).\n")


def evaluate(
    train_shards: Sequence[str | Path],
    test_shards: Sequence[str | Path],
    checkpoint: str | Path,
    out_dir: str | Path,
    cfg: EvaluateConfig,
) -> dict[str, Any]:
    """Run the whole evaluation (see the module docstring); returns the summary written to summary.json."""
    import torch

    from models.unet import load_im2flow

    from pipeline.atomic import write_text
    from pipeline.evaluate.baselines import make_baseline
    from pipeline.viz import save_flow_grid
    from pipeline.evaluate.motion_potential import save_ranked_figure, score_images
    from pipeline.predict import hallucinate
    from pipeline.train.loop import choose_device

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = choose_device(cfg.device)
    t0 = time.perf_counter()
    test = load_split(test_shards, cfg.max_test_images, cfg.seed)
    train = load_split(train_shards, cfg.max_train_images, cfg.seed)
    if len(test.frames) == 0:
        raise ValueError("no test samples in " + ", ".join(map(str, test_shards)))
    log.info("evaluating on %d test frames (%dx%d); baselines fit on %d training frames",
             len(test.frames), *test.frames.shape[1:3], len(train.frames))

    predictions: dict[str, np.ndarray] = {}
    descriptions: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for name in cfg.baselines:
        title = BASELINE_TITLES.get(name, name)
        start = time.perf_counter()
        baseline = make_baseline(name, **cfg.baseline_params.get(name, {}))
        baseline.fit(train.frames, train.flows)
        predictions[title] = np.asarray(baseline.predict(test.frames), np.float32)
        descriptions[title] = baseline.describe()
        seconds[title] = time.perf_counter() - start
        log.info("baseline %s: %s (%.1f s)", title, descriptions[title], seconds[title])

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = load_im2flow(checkpoint)
    clip = float(ckpt.get("magnitude_clip", test.magnitude_clip))
    if abs(clip - test.magnitude_clip) > 1e-6:
        log.warning("checkpoint magnitude clip %g differs from the test shards' %g; decoding with the checkpoint's",
                    clip, test.magnitude_clip)
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    predictions[IM2FLOW] = hallucinate(model, test.frames, clip, bn_mode=cfg.bn_mode,
                                       batch_size=cfg.batch_size, device=device, flip_average=cfg.flip_average)
    seconds[IM2FLOW] = time.perf_counter() - start
    descriptions[IM2FLOW] = (f"U-Net {ckpt.get('train_config', {}).get('model', '?')} preset, step {ckpt.get('step')}, "
                             f"BatchNorm {cfg.bn_mode} mode, magnitude clip {clip:g} px"
                             + (", averaged with its mirrored prediction" if cfg.flip_average else ""))

    fg_masks = np.stack([M.foreground_mask(f, cfg.foreground) for f in test.frames])
    fg_name = M.foreground_method_name(cfg.foreground)
    table, per_image = M.evaluate_predictions(test.frames, test.flows, predictions, fg_masks=fg_masks)

    def scores_if(bn_mode: str, flip_average: bool) -> dict[str, float]:
        """Im2Flow's all/Canny/FG scores under an inference choice not taken, so each choice stays checked."""
        flow = hallucinate(model, test.frames, clip, bn_mode=bn_mode, batch_size=cfg.batch_size, device=device,
                           flip_average=flip_average)
        row = M.evaluate_predictions(test.frames, test.flows, {IM2FLOW: flow}, fg_masks=fg_masks)[0][0]
        return {k: row[k] for k in M.table_columns()}

    other_mode = "train" if cfg.bn_mode == "eval" else "eval"
    for row in table:
        row["fg_mask"] = fg_name
    meta = [{"video_id": test.video_ids[i], "frame_index": test.frame_index[i],
             "label_name": test.class_names[int(test.labels[i])] if test.class_names else str(int(test.labels[i]))}
            for i in range(len(test.frames))]
    for row in per_image:
        row.update(meta[row["image"]])

    m = margins(table)
    M.write_rows_csv(table, out / "table.csv")
    M.write_rows_csv(per_image, out / "per_image.csv")
    note = format_margins(m)
    write_text(out / "table.md", M.format_table_markdown(table) + ("\n" + note if note else ""))
    log.info("\n%s\n%s", M.format_table_markdown(table), note)

    # figure grid: input | each method | ground truth
    methods = [IM2FLOW] + [t for t in predictions if t != IM2FLOW]
    rows_idx = pick_figure_rows(test.labels, cfg.figure_rows)
    grid = [[test.frames[i]] + [predictions[t][i] for t in methods] + [test.flows[i]] for i in rows_idx]
    save_flow_grid(grid, ["input"] + methods + ["ground truth"], out / "examples.png",
                   row_labels=[meta[i]["label_name"] for i in rows_idx])

    mp_rows, mp_summary = score_images(predictions[IM2FLOW], fg_masks, test.flows, meta)
    M.write_rows_csv(mp_rows, out / "motion_potential.csv")
    save_ranked_figure(mp_rows, test.frames, predictions[IM2FLOW], out / "motion_potential.png",
                       n=cfg.motion_potential_rows)
    log.info("motion potential: Spearman correlation with the true flow's score %s",
             mp_summary.get("spearman_vs_truth"))

    summary = {
        "config": dataclasses.asdict(cfg), "device": str(device),
        "checkpoint": str(checkpoint), "checkpoint_step": ckpt.get("step"),
        "train_config": ckpt.get("train_config"), "magnitude_clip": clip,
        "n_test_images": len(test.frames), "n_train_images": len(train.frames),
        "frame_size": list(test.frames.shape[1:3]), "foreground_mask": fg_name,
        "methods": descriptions, "seconds": seconds, "margins_all_pixels": m,
        "beats_every_baseline": bool(m) and all(
            d["EPE_all"] is not None and d["EPE_all"] > 0 and d["DS_all"] is not None and d["DS_all"] > 0
            for d in m.values()),
        "bn_mode": cfg.bn_mode,
        "bn_mode_check": {other_mode: scores_if(other_mode, cfg.flip_average)},
        "flip_average": cfg.flip_average,
        "flip_average_check": {f"flip_average={not cfg.flip_average}": scores_if(cfg.bn_mode, not cfg.flip_average)},
        "motion_potential": mp_summary,
        "elapsed_s": time.perf_counter() - t0,
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    log.info("evaluation written to %s in %.1f s", out, summary["elapsed_s"])
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train-shards", nargs="+", required=True, help="training shards (the baselines fit on them)")
    p.add_argument("--test-shards", nargs="+", required=True, help="test shards (every method is scored on them)")
    p.add_argument("--checkpoint", required=True, help="Im2Flow checkpoint.pt from `im2flow train`")
    p.add_argument("--out", required=True, help="output folder (" + ", ".join(OUTPUTS) + ")")
    p.add_argument("--config-json", help="the evaluate config slice: inline JSON or a .json/.yaml file")
    p.add_argument("--threads", type=int, help="CPU intra-op threads (the rule's threads)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1...")


def run(args: argparse.Namespace) -> int:
    from pipeline.train.loop import config_from_mapping, read_config_arg

    values = read_config_arg(args.config_json)
    for key in ("threads", "device"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    cfg = config_from_mapping(EvaluateConfig, values, "evaluate")
    evaluate(args.train_shards, args.test_shards, args.checkpoint, args.out, cfg)
    return 0
