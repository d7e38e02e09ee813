"""Static-image action recognition with hallucinated motion: the two-stream experiment (paper Table 2).

Data (:mod:`pipeline.recognize.static_sets`): the centre frame of every video
of the configured splits (static shards, which keep the five-future-frame true
flow of that frame for the ground-truth-motion upper bound), or a folder of
labelled still images, which has no true flow.

Streams (:mod:`pipeline.recognize.streams`; a torchvision backbone each,
ImageNet weights when the local torchvision cache has them, else random
initialisation, logged):

- appearance: the RGB image;
- motion: the flow image that a trained Im2Flow network hallucinates from it,
  through the same inference path as Table 1 (:mod:`pipeline.inference`),
  computed once, in batches, into an HDF5 file that the stream then reads;
- ground-truth motion: the true flow image (video-derived datasets only),
  mapped with the Im2Flow checkpoint's magnitude clip so both motions match.

Fusion: late fusion of softmax scores, ``w * p_appearance + (1 - w) * p_other``,
with ``w`` chosen on a validation split carved (stratified) from the training
set. The fair baseline is appearance + appearance: two appearance streams from
different seeds, fused the same way. Every stream is trained on the training
set minus the validation split; the test split is never looked at until the
weights are fixed.

Outputs in ``--out-dir``: ``table.csv`` and ``table.md`` (accuracy and mean
average precision per configuration, as in Table 2, with a closing note on
whether appearance + motion beats appearance + appearance), ``metrics.json``
and ``scores.npz`` (every stream's softmax scores).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

from models.unet import load_im2flow
from pipeline.config import config_from_mapping, read_config_arg
from pipeline.data.shards import compression
from pipeline.encoding import DEFAULT_MAGNITUDE_CLIP
from pipeline.inference import Im2FlowPredictor, InferenceOptions
from pipeline.recognize.scoring import accuracy, choose_fusion_weight, fuse, mean_average_precision
from pipeline.recognize.static_sets import Column, StaticSet, stratified_split, write_image_folder
from pipeline.recognize.streams import StreamInput, train_stream
from pipeline.recognize.tables import table_rows, verdict, write_refusal, write_tables
from pipeline.runtime import choose_device, set_threads

log = logging.getLogger(__name__)


@dataclass
class RecognizeConfig:
    """The ``recognize`` block of the pipeline config (keys the rule does not consume)."""

    backbone: str = "resnet18"          # any torchvision classification model name, or "tiny" (tests)
    pretrained: str | None = "imagenet"  # imagenet (local torchvision cache only), none, or a file
    input_size: int | None = None        # resize inputs to this square size (224 in the paper); null keeps
    epochs: int = 30
    batch_size: int = 16
    lr: float = 0.001
    weight_decay: float = 0.0001
    validation_fraction: float = 0.25
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    repeats: int = 1
    fusion_grid: list[float] = field(default_factory=lambda: [round(0.05 * i, 2) for i in range(21)])
    ground_truth_motion: bool = True
    hallucinate_batch: int = 32
    bn_mode: str = "eval"       # Im2Flow's test-time choices: the evaluate config's, so Tables 1 and 2 agree
    flip_average: bool = False
    min_train_per_class: int = 3  # fewer training images in a class: refuse (the validation split needs some)
    min_test_per_class: int = 1
    device: str = "auto"


def refusal(train: StaticSet, test: StaticSet, cfg: RecognizeConfig) -> str | None:
    """Why Table 2 would be meaningless on these sets (None when it would not): too few training or
    test images in a class, or a test class never seen in training."""
    names = train.class_names
    n_train = np.bincount(train.labels, minlength=len(names))
    n_test = np.bincount(test.labels, minlength=len(names))
    unseen = [names[c] for c in range(len(names)) if n_test[c] and not n_train[c]]
    if unseen:
        return f"test class(es) with no training image: {', '.join(unseen)}"
    short = [f"{names[c]} ({n_train[c]})" for c in range(len(names)) if n_train[c] < cfg.min_train_per_class]
    if short:
        return (f"class(es) with fewer than recognize.min_train_per_class = {cfg.min_train_per_class} training "
                f"images: {', '.join(short)}")
    few = [f"{names[c]} ({n_test[c]})" for c in range(len(names)) if n_test[c] < cfg.min_test_per_class]
    if few:
        return (f"class(es) with fewer than recognize.min_test_per_class = {cfg.min_test_per_class} test images: "
                f"{', '.join(few)}")
    return None


# --------------------------------------------------------------------------- hallucinated motion


def hallucinate_into(predictor: Im2FlowPredictor, frames: Column, path: Path, batch_size: int) -> Column:
    """Im2Flow's flow image (network range, float16) for every row of ``frames``, written in batches
    into ``path`` (dataset ``motion``); returns the column that reads it back."""
    with h5py.File(path, "w") as f:
        motion = None
        for start in range(0, len(frames), batch_size):
            images = frames.rows(range(start, min(start + batch_size, len(frames))))
            net = predictor.network_images(images).astype(np.float16)
            if motion is None:
                motion = f.create_dataset("motion", (len(frames), *net.shape[1:]), np.float16,
                                          chunks=(1, *net.shape[1:]), **compression("blosc-lz4"))
            motion[start:start + len(net)] = net
    return Column([path], "motion")


def stream_inputs(train: StaticSet, test: StaticSet, predictor: Im2FlowPredictor | None, cfg: RecognizeConfig,
                  workdir: Path) -> dict[str, StreamInput]:
    """The appearance input, and the motion and ground-truth-motion inputs where they exist."""
    inputs = {"appearance": StreamInput(train.frames, test.frames, "rgb")}
    clip = predictor.magnitude_clip if predictor is not None else DEFAULT_MAGNITUDE_CLIP
    if predictor is not None:
        started = time.time()
        inputs["motion"] = StreamInput(
            hallucinate_into(predictor, train.frames, workdir / "motion-train.h5", cfg.hallucinate_batch),
            hallucinate_into(predictor, test.frames, workdir / "motion-test.h5", cfg.hallucinate_batch), "flow_net")
        log.info("hallucinated flow for %d images in %.1f s (%s)", len(train) + len(test), time.time() - started,
                 predictor.describe())
    if cfg.ground_truth_motion and train.has_flow and test.has_flow:
        inputs["gt_motion"] = StreamInput(train.flow, test.flow, "flow_px", clip)
    return inputs


# --------------------------------------------------------------------------- the experiment


def run_repeat(r: int, inputs: dict[str, StreamInput], train: StaticSet, test: StaticSet, cfg: RecognizeConfig,
               all_scores: dict[str, np.ndarray]) -> dict:
    """One repeat: a stratified validation split, every stream trained and scored, the fusions."""
    tr, va = stratified_split(train.labels, cfg.validation_fraction, seed=cfg.seeds[0] + 7919 * r)
    if len(va) == 0:
        raise ValueError("the validation split is empty (every class has fewer than two training images): "
                         "no fusion weight can be chosen")
    streams = {"appearance": ("appearance", 0), "appearance_2": ("appearance", 1)}
    streams.update({k: (k, 0) for k in ("motion", "gt_motion") if k in inputs})
    scores = {}
    for stream, (source, which_seed) in streams.items():
        data = inputs[source]
        evaluate = {"val": (data.train, va), "test": (data.test, np.arange(len(test)))}
        scores[stream] = train_stream(f"{stream} (repeat {r})", data, train.labels, tr, evaluate,
                                      len(train.class_names), cfg, cfg.seeds[which_seed] + 1000 * r)
        for part in ("val", "test"):
            all_scores[f"r{r}/{stream}/{part}"] = scores[stream][part]
    y_val, y_test = train.labels[va], test.labels
    rows = {s: dict(weight=None, accuracy=accuracy(scores[s]["test"], y_test),
                    mAP=mean_average_precision(scores[s]["test"], y_test),
                    val_accuracy=accuracy(scores[s]["val"], y_val)) for s in streams}
    for other in [s for s in streams if s != "appearance"]:
        w = choose_fusion_weight(scores["appearance"]["val"], scores[other]["val"], y_val, cfg.fusion_grid)
        fused = fuse(scores["appearance"]["test"], scores[other]["test"], w)
        rows[f"appearance+{other}"] = dict(weight=w, accuracy=accuracy(fused, y_test),
                                           mAP=mean_average_precision(fused, y_test),
                                           val_accuracy=accuracy(fuse(scores["appearance"]["val"],
                                                                      scores[other]["val"], w), y_val))
    return dict(repeat=r, n_train=len(tr), n_val=len(va), n_test=len(y_test), rows=rows)


def run_experiment(train: StaticSet, test: StaticSet, im2flow_checkpoint: str | Path | None, cfg: RecognizeConfig,
                   static_name: str = "static", im2flow_name: str = "Im2Flow") -> dict:
    """Train every stream, fuse, score on test. Returns rows (Table 2), per-repeat details and scores."""
    if train.class_names != test.class_names:
        raise ValueError("train and test static sets name different classes")
    if len(cfg.seeds) < 2 or cfg.seeds[0] == cfg.seeds[1]:
        raise ValueError("recognize.seeds needs two different seeds (the appearance + appearance baseline)")
    device = choose_device(cfg.device)
    predictor = None
    if im2flow_checkpoint is not None:
        options = InferenceOptions(cfg.bn_mode, cfg.flip_average, batch_size=cfg.hallucinate_batch)
        predictor = Im2FlowPredictor(load_im2flow(im2flow_checkpoint), device, options)
    with tempfile.TemporaryDirectory(prefix="im2flow-recognize-") as workdir:
        inputs = stream_inputs(train, test, predictor, cfg, Path(workdir))
        all_scores: dict[str, np.ndarray] = {}
        repeats = [run_repeat(r, inputs, train, test, cfg, all_scores) for r in range(cfg.repeats)]
    all_scores["val_indices_r0"] = stratified_split(train.labels, cfg.validation_fraction, seed=cfg.seeds[0])[1]
    all_scores["test_labels"] = test.labels
    return dict(rows=table_rows(repeats, im2flow_name), repeats=repeats, scores=all_scores,
                static_name=static_name, im2flow_name=im2flow_name, class_names=train.class_names,
                n_train=len(train), n_test=len(test), config=asdict(cfg),
                magnitude_clip=predictor.magnitude_clip if predictor else None,
                im2flow=predictor.describe() if predictor else None, device=str(device))


# --------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train-shards", nargs="*", default=[], help="static shards of the training split")
    p.add_argument("--test-shards", nargs="*", default=[], help="static shards of the test split")
    p.add_argument("--images-root", default=None, help="a folder of labelled still images instead of shards")
    p.add_argument("--image-size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"),
                   help="size still images are resized to (with --images-root)")
    p.add_argument("--test-fraction", type=float, default=0.3, help="test share of an unsplit image folder")
    p.add_argument("--im2flow", default=None, help="trained Im2Flow checkpoint.pt (omit: no motion stream)")
    p.add_argument("--static-name", default="static")
    p.add_argument("--im2flow-name", default="Im2Flow", help="what the checkpoint was trained on, for the table")
    p.add_argument("--config-json", default=None, help="recognize config (JSON, or a .json/.yaml file)")
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--threads", type=int, default=1)


RULE_ONLY_KEYS = ("enabled", "source", "images_root", "images_test_fraction", "static_name", "im2flow_checkpoint",
                  "im2flow_name", "threads")


def run(args: argparse.Namespace) -> int:
    set_threads(max(1, args.threads))
    values = {k: v for k, v in read_config_arg(args.config_json).items() if k not in RULE_ONLY_KEYS}
    cfg = config_from_mapping(RecognizeConfig, values, "recognize")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out_dir, prefix=".stills-") as stills:
        if args.images_root:
            paths = write_image_folder(args.images_root, tuple(args.image_size), stills, args.test_fraction)
            train, test = StaticSet([paths[0]]), StaticSet([paths[1]])
        elif args.train_shards and args.test_shards:
            train, test = StaticSet(args.train_shards), StaticSet(args.test_shards)
        else:
            raise SystemExit("give --train-shards and --test-shards, or --images-root")
        log.info("static dataset %s: %d train, %d test images, classes %s", args.static_name, len(train),
                 len(test), train.class_names)
        reason = refusal(train, test, cfg)
        if reason is not None:
            log.error("recognition refused on %s: %s", args.static_name, reason)
            write_refusal(reason, args.out_dir, n_train=len(train), n_test=len(test))
            return 0
        result = run_experiment(train, test, args.im2flow, cfg, args.static_name, args.im2flow_name)
    write_tables(result, args.out_dir)
    log.info("%s", verdict(result))
    return 0
