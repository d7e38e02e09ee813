"""Flow-prediction evaluation against baselines (Im2Flow Table 1) and motion potential (rule ``evaluate``).

`im2flow evaluate` reads the train and test shards and a trained Im2Flow
checkpoint, fits the baselines (:mod:`pipeline.evaluate.baselines`) on the
training samples (all, or a seeded subset of ``max_train_images``), then streams
the test frames in batches through every method and accumulates per-image
metrics; no split is ever held in memory. It writes into ``--out``:

- ``table.csv`` / ``table.md``: methods × EPE / DS / OS × all / Canny / FG,
  with Im2Flow's margin over each baseline (all pixels) and the test-time
  treatment under the Markdown table;
- ``per_image.csv``: every method's metrics on every test image;
- ``examples.png``: input | each method | ground truth, colour-wheel coded,
  one flow scale per row, with the wheel's legend;
- ``motion_potential.csv`` / ``motion_potential.png``: the test images ranked by
  motion potential (:mod:`pipeline.evaluate.motion_potential`);
- ``summary.json``: provenance: config, checkpoint, BatchNorm mode, baseline
  descriptions, image counts, margins, seconds per method.

Fair test-time treatment: with ``flip_average`` every method's prediction (not
only Im2Flow's) is averaged with its prediction for the mirrored frame,
mirrored back; the table under the other choice is scored too
(``flip_average_check``), as is Im2Flow under the other BatchNorm mode
(``bn_mode_check``), so each choice stays checked on every run. Everything is
seeded; one run gives the same table twice.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from models.unet import Im2FlowCheckpoint, load_im2flow
from pipeline.atomic import atomic_path, write_text
from pipeline.config import slice_from_args
from pipeline.encoding import hflip_frames, hflip_raw
from pipeline.evaluate import metrics as M
from pipeline.evaluate.baselines import BASELINES, make_baseline
from pipeline.evaluate.motion_potential import MotionPotentialRanking, save_ranked_figure
from pipeline.evaluate.samples import ShardSamples
from pipeline.inference import BN_MODES, Im2FlowPredictor, InferenceOptions
from pipeline.runtime import choose_device, set_threads
from pipeline.viz import save_flow_grid

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
# baselines that run a network take the evaluation's device
DEVICE_BASELINES = ("nearest_neighbour", "codebook")


@dataclass
class EvaluateConfig:
    """The `evaluate` slice of the config (see workflow/schemas/config.schema.yaml)."""

    baselines: list[str] = field(default_factory=lambda: list(DEFAULT_BASELINES))
    baseline_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_test_images: int | None = None  # None = every test frame; else a seeded subset
    max_train_images: int | None = None  # None = every training frame; else the baselines fit on a seeded subset
    foreground: str = M.DEFAULT_SALIENCY  # saliency method of the FG mask
    bn_mode: str = "eval"
    flip_average: bool = False  # every method averaged with its mirrored frame's prediction
    batch_size: int = 32
    figure_rows: int = 6
    motion_potential_rows: int = 4
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"evaluate.baselines: unknown {unknown}; known: {sorted(BASELINES)}")
        if self.bn_mode not in BN_MODES:
            raise ValueError(f"evaluate.bn_mode must be one of {BN_MODES}, got {self.bn_mode!r}")
        if self.foreground not in M.SALIENCY_METHODS:
            raise ValueError(f"evaluate.foreground must be one of {M.SALIENCY_METHODS}, got {self.foreground!r}")


@dataclass
class Method:
    """One row of Table 1: how it predicts, what it is, what it cost."""

    predict: Callable[[np.ndarray], np.ndarray]
    description: str
    seconds: float = 0.0
    random_init_features: bool = False


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


def beats_every_baseline(m: dict[str, dict[str, float | None]]) -> bool:
    return bool(m) and all(d["EPE_all"] is not None and d["EPE_all"] > 0 and d["DS_all"] is not None
                           and d["DS_all"] > 0 for d in m.values())


def format_margins(m: dict[str, dict[str, float | None]]) -> str:
    """One Markdown line: how far Im2Flow is ahead of (or behind) each baseline, all pixels."""
    if not m:
        return ""
    parts = []
    for method, d in m.items():
        epe = "–" if d["EPE_all"] is None else f"{d['EPE_all']:+.3f} px"
        ds = "–" if d["DS_all"] is None else f"{d['DS_all']:+.3f}"
        parts.append(f"{method}: EPE {epe}, DS {ds}")
    verdict = "beats every baseline" if beats_every_baseline(m) else "does NOT beat every baseline"
    return (f"Im2Flow's margin over each baseline, all pixels (positive = Im2Flow better): "
            + "; ".join(parts) + f". Im2Flow {verdict} on EPE and DS (all pixels).\n")


def treatment_note(cfg: EvaluateConfig, methods: dict[str, Method], n_train: int, n_train_total: int) -> str:
    """What every method got at test time and what it was fitted on, for the table's reader."""
    flip = ("every method's prediction is averaged with its prediction for the mirrored frame, mirrored back"
            if cfg.flip_average else "no flip averaging for any method")
    lines = [f"Test-time treatment (same for every method): {flip} (`evaluate.flip_average: "
             f"{str(cfg.flip_average).lower()}`). Baselines fitted on {n_train:,} of {n_train_total:,} "
             f"training frames (`evaluate.max_train_images: {cfg.max_train_images}`)."]
    for title, method in methods.items():
        if method.random_init_features:
            lines.append(f"{title} ran on random-initialisation features (no ImageNet weights offline): "
                         f"{method.description}.")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the methods


def fit_baselines(cfg: EvaluateConfig, train: ShardSamples, device: torch.device) -> dict[str, Method]:
    """Every configured baseline, fitted on ``train``."""
    methods = {}
    for name in cfg.baselines:
        title = BASELINE_TITLES.get(name, name)
        params = dict(cfg.baseline_params.get(name, {}))
        if name in DEVICE_BASELINES:
            params.setdefault("device", str(device))
        start = time.perf_counter()
        baseline = make_baseline(name, **params).fit(train)
        methods[title] = Method(baseline.predict, baseline.describe(), time.perf_counter() - start,
                                baseline.random_init_features)
        log.info("baseline %s: %s (fitted in %.1f s)", title, methods[title].description, methods[title].seconds)
    return methods


def im2flow_methods(cfg: EvaluateConfig, loaded: Im2FlowCheckpoint, device: torch.device) -> tuple[Method, Method]:
    """(Im2Flow under the configured BatchNorm mode, Im2Flow under the other one, on a copy of the
    network: the BatchNorm mode is set on the modules)."""
    other_mode = "train" if cfg.bn_mode == "eval" else "eval"
    twin = dataclasses.replace(loaded, model=copy.deepcopy(loaded.model))
    chosen = Im2FlowPredictor(loaded, device, InferenceOptions(cfg.bn_mode, batch_size=cfg.batch_size))
    other = Im2FlowPredictor(twin, device, InferenceOptions(other_mode, batch_size=cfg.batch_size))
    return Method(chosen, chosen.describe()), Method(other, other.describe())


def both_treatments(predict: Callable[[np.ndarray], np.ndarray], frames: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(plain prediction, flip-averaged prediction) from one prediction of the frames and one of their mirror."""
    plain = predict(frames)
    return plain, 0.5 * (plain + hflip_raw(predict(hflip_frames(frames))))


# ----------------------------------------------------------------------------- the stream


class Scoring:
    """Everything accumulated while the test frames stream past: both treatments' tables, the other
    BatchNorm mode's Im2Flow scores, the per-image CSV, motion potential and the figure's rows."""

    def __init__(self, cfg: EvaluateConfig, test: ShardSamples, fg_name: str, per_image_fh, figure_rows: list[int]):
        self.cfg, self.test = cfg, test
        self.labels, self.video_ids, self.frame_index = test.meta()
        self.chosen, self.other = M.TableAccumulator(fg_name), M.TableAccumulator(fg_name)
        self.bn_other = M.TableAccumulator(fg_name)
        self.ranking = MotionPotentialRanking(keep=cfg.motion_potential_rows)
        self.per_image = per_image_fh
        self.figure: dict[int, dict[str, np.ndarray]] = {i: {} for i in figure_rows}

    def meta(self, i: int) -> dict[str, Any]:
        names = self.test.class_names
        label = int(self.labels[i])
        return {"video_id": self.video_ids[i], "frame_index": self.frame_index[i],
                "label_name": names[label] if names else str(label)}

    def add(self, title: str, positions: np.ndarray, flows: np.ndarray, chosen: np.ndarray, other: np.ndarray,
            masks: list[dict[str, np.ndarray]]) -> None:
        for k, i in enumerate(positions):
            truth = np.nan_to_num(flows[k])
            row = {"method": title, "image": int(i), **M.image_metrics(truth, chosen[k], masks[k])}
            self.chosen.add(title, row)
            self.other.add(title, M.image_metrics(truth, other[k], masks[k]))
            self.per_image.writerow(M.csv_row(row | self.meta(int(i)), self.per_image.fieldnames))
            if int(i) in self.figure:  # a copy: a view would keep the whole batch alive
                self.figure[int(i)][title] = chosen[k].copy()


def score_test_set(cfg: EvaluateConfig, test: ShardSamples, methods: dict[str, Method], bn_other: Method,
                   out: Path) -> Scoring:
    """Stream the test frames through every method (both flip treatments) and score each image."""
    fg_name = M.foreground_method_name(cfg.foreground)
    columns = ["method", "image", *[f"{k}_{r}" for r in M.REGIONS for k in ("n", *M.METRICS)],
               "video_id", "frame_index", "label_name"]
    with atomic_path(out / "per_image.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        scoring = Scoring(cfg, test, fg_name, writer, pick_figure_rows(test.meta()[0], cfg.figure_rows))
        for batch in tqdm(test.batches(cfg.batch_size), total=-(-len(test) // cfg.batch_size), desc="evaluate",
                          unit="batch", mininterval=5):
            _score_batch(cfg, scoring, methods, bn_other, batch)
    return scoring


def _score_batch(cfg: EvaluateConfig, scoring: Scoring, methods: dict[str, Method], bn_other: Method, batch) -> None:
    fg = [M.foreground_mask(f, cfg.foreground) for f in batch.frames]
    masks = [M.region_masks(f, t, m) for f, t, m in zip(batch.frames, batch.flows, fg)]
    for title, method in methods.items():
        start = time.perf_counter()
        plain, averaged = both_treatments(method.predict, batch.frames)
        method.seconds += time.perf_counter() - start
        chosen, other = (averaged, plain) if cfg.flip_average else (plain, averaged)
        scoring.add(title, batch.positions, batch.flows, chosen, other, masks)
        if title == IM2FLOW:
            for k, i in enumerate(batch.positions):
                scoring.ranking.add(int(i), batch.frames[k], chosen[k], fg[k], batch.flows[k], scoring.meta(int(i)))
                if int(i) in scoring.figure:
                    scoring.figure[int(i)].update(frame=batch.frames[k].copy(), truth=batch.flows[k].copy())
    other_bn = both_treatments(bn_other.predict, batch.frames)[1 if cfg.flip_average else 0]
    for k in range(len(batch.positions)):
        scoring.bn_other.add(IM2FLOW, M.image_metrics(np.nan_to_num(batch.flows[k]), other_bn[k], masks[k]))


# ----------------------------------------------------------------------------- outputs


def write_outputs(cfg: EvaluateConfig, scoring: Scoring, methods: dict[str, Method], note: str, out: Path) -> dict:
    """table.csv/md, the figures and motion_potential.csv; returns the table's margins and the motion summary."""
    table = scoring.chosen.rows()
    m = margins(table)
    M.write_rows_csv(table, out / "table.csv")
    text = M.format_table_markdown(table) + "\n" + format_margins(m) + "\n" + note
    write_text(out / "table.md", text)
    log.info("\n%s", text)
    order = [IM2FLOW] + [t for t in methods if t != IM2FLOW]
    rows = [r for r in scoring.figure.values() if "frame" in r]
    grid = [[r["frame"]] + [r[t] for t in order] + [r["truth"]] for r in rows]
    labels = [scoring.meta(i)["label_name"] for i, r in scoring.figure.items() if "frame" in r]
    save_flow_grid(grid, ["input"] + order + ["ground truth"], out / "examples.png", row_labels=labels)
    mp_rows, mp_summary = scoring.ranking.ranked()
    M.write_rows_csv(mp_rows, out / "motion_potential.csv")
    save_ranked_figure(mp_rows, scoring.ranking.pictures(), out / "motion_potential.png", n=cfg.motion_potential_rows)
    log.info("motion potential: Spearman correlation with the true flow's score %s",
             mp_summary.get("spearman_vs_truth"))
    return {"table": table, "margins": m, "motion_potential": mp_summary}


def _all_pixels(table: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    return {r["method"]: {k: r[k] for k in M.table_columns()} for r in table}


def evaluate(train_shards: Sequence[str | Path], test_shards: Sequence[str | Path], checkpoint: str | Path,
             out_dir: str | Path, cfg: EvaluateConfig) -> dict[str, Any]:
    """Run the whole evaluation (see the module docstring); returns the summary written to summary.json."""
    set_threads(cfg.threads)
    out, device, t0 = Path(out_dir), choose_device(cfg.device), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    test = ShardSamples(test_shards, cfg.max_test_images, cfg.seed)
    train = ShardSamples(train_shards, cfg.max_train_images, cfg.seed)
    if len(test) == 0:
        raise ValueError("no test samples in " + ", ".join(map(str, test_shards)))
    log.info("evaluating on %d test frames (%dx%d); baselines fit on %d of %d training frames", len(test),
             *test.frame_size, len(train), train.total)
    methods = fit_baselines(cfg, train, device)
    torch.manual_seed(cfg.seed)
    loaded = load_im2flow(checkpoint)
    methods[IM2FLOW], bn_other = im2flow_methods(cfg, loaded, device)
    scoring = score_test_set(cfg, test, methods, bn_other, out)
    note = treatment_note(cfg, methods, len(train), train.total)
    written = write_outputs(cfg, scoring, methods, note, out)
    other_mode = "train" if cfg.bn_mode == "eval" else "eval"
    summary = {
        "config": dataclasses.asdict(cfg), "device": str(device), "checkpoint": str(checkpoint),
        "checkpoint_step": loaded.step, "train_config": loaded.train_config, "magnitude_clip": loaded.magnitude_clip,
        "n_test_images": len(test), "n_train_images": len(train), "n_train_images_total": train.total,
        "frame_size": list(test.frame_size), "foreground_mask": M.foreground_method_name(cfg.foreground),
        "methods": {t: m.description for t, m in methods.items()}, "seconds": {t: m.seconds for t, m in methods.items()},
        "random_init_features": [t for t, m in methods.items() if m.random_init_features],
        "treatment": note.strip(), "margins_all_pixels": written["margins"],
        "beats_every_baseline": beats_every_baseline(written["margins"]), "bn_mode": cfg.bn_mode,
        "bn_mode_check": {other_mode: _all_pixels(scoring.bn_other.rows())[IM2FLOW]},
        "flip_average": cfg.flip_average,
        "flip_average_check": {f"flip_average={not cfg.flip_average}": _all_pixels(scoring.other.rows())},
        "motion_potential": written["motion_potential"], "elapsed_s": time.perf_counter() - t0,
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
    cfg = slice_from_args(EvaluateConfig, args, "evaluate", ("threads", "device"))
    evaluate(args.train_shards, args.test_shards, args.checkpoint, args.out, cfg)
    return 0
