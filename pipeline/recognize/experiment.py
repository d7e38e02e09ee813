"""Static-image action recognition with hallucinated motion: the two-stream experiment (paper Table 2).

Data: a static dataset is either the centre frame of every video of the
configured splits (static shards written by the ``static_*`` rules, which keep
the five-future-frame true flow of that frame for the ground-truth-motion upper
bound), or a plain folder of labelled still images (class = folder; the form of
Willow, Stanford-40 and PASCAL action crops), which has no true flow.

Streams (a torchvision backbone each, ImageNet weights when the local
torchvision cache has them, else random initialisation, logged):

- appearance: the RGB image;
- motion: the flow image that a trained Im2Flow network hallucinates from it;
- ground-truth motion: the true flow image (video-derived datasets only).

Every input is a 3-channel image in [-1, 1] (RGB, or sin/cos/normalised
magnitude with the Im2Flow checkpoint's magnitude clip), mapped to [0, 1] and
ImageNet-normalised, as the motion-content network does.

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
import csv
import io
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.train import loop as tu
from pipeline.atomic import save_npz, write_text
from pipeline.data.discovery import stable_hash
from pipeline.encoding import to_network

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- config


@dataclass
class RecognizeConfig:
    """The ``recognize`` block of the pipeline config (keys the rule does not consume)."""

    backbone: str = "resnet18"          # any torchvision classification model name, or "tiny" (tests)
    pretrained: str | None = "imagenet"  # imagenet (local torchvision cache only) or null
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
    device: str = "auto"


# --------------------------------------------------------------------------- static datasets


@dataclass
class StaticSet:
    """Still images with labels; ``true_flow`` (N, 3, H, W) (sin, cos, M px) when known."""

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    class_names: list[str]
    true_flow: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


def load_static_shards(paths: list[str | os.PathLike]) -> StaticSet:
    """The samples of static shards (one centre frame per video) with their true flow."""
    from pipeline.data.dataset import ShardDataset

    ds = ShardDataset(paths)
    images, flows, labels, ids = [], [], [], []
    for i in range(len(ds)):
        frame, flow, label, video_id, _ = ds.read(i)
        images.append(frame)
        flows.append(flow)
        labels.append(label)
        ids.append(video_id)
    ds.close()
    h, w = ds.frame_size
    return StaticSet(np.stack(images) if images else np.zeros((0, h, w, 3), np.uint8),
                     np.array(labels, np.int64), ids, ds.class_names,
                     np.stack(flows) if flows else np.zeros((0, 3, h, w), np.float32))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


def load_image_folder(root: str | os.PathLike, size_hw: tuple[int, int], test_fraction: float = 0.3
                      ) -> tuple[StaticSet, StaticSet]:
    """(train, test) from a folder of labelled still images, class = folder.

    ``root/train/<class>/*`` and ``root/test/<class>/*`` when both exist (an
    official split); otherwise ``root/<class>/*`` split by a stable hash of the
    relative path, ``test_fraction`` of the images going to test. Images are
    resized to ``size_hw``; an unreadable file is skipped with a warning.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"still-image folder {root} is not a directory")
    split_dirs = {s: root / s for s in ("train", "test")}
    if all(d.is_dir() for d in split_dirs.values()):
        entries = [(s, p.relative_to(d).parts[0], p) for s, d in split_dirs.items() for p in _image_files(d)
                   if len(p.relative_to(d).parts) > 1]
    else:
        entries = []
        for p in _image_files(root):
            rel = p.relative_to(root)
            if len(rel.parts) < 2:
                log.warning("%s: not inside a class folder; skipped", p)
                continue
            which = "test" if (stable_hash(rel.as_posix()) % 10_000) / 10_000 < test_fraction else "train"
            entries.append((which, rel.parts[0], p))
    classes = sorted({c for _, c, _ in entries})
    if len(classes) < 2:
        raise ValueError(f"{root}: found {len(classes)} class folder(s) with images; need at least 2")
    h, w = size_hw
    out = {s: ([], [], []) for s in ("train", "test")}
    for which, class_name, path in entries:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            log.warning("%s: not an image OpenCV can read; skipped", path)
            continue
        rgb = cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        images, labels, ids = out[which]
        images.append(rgb)
        labels.append(classes.index(class_name))
        ids.append(path.relative_to(root).as_posix())
    sets = []
    for which in ("train", "test"):
        images, labels, ids = out[which]
        if not images:
            raise ValueError(f"{root}: no readable {which} images")
        sets.append(StaticSet(np.stack(images), np.array(labels, np.int64), ids, classes, None))
    log.info("%s: %d train / %d test still images in %d classes", root, len(sets[0]), len(sets[1]), len(classes))
    return sets[0], sets[1]


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): ``fraction`` of each class (at least one if it has two)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(round(fraction * len(idx)))
        k = min(max(k, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        val += idx[:k].tolist()
        train += idx[k:].tolist()
    return np.array(sorted(train), np.int64), np.array(sorted(val), np.int64)


# --------------------------------------------------------------------------- metrics and fusion


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
    """The grid weight with the best validation accuracy; ties go to the best mAP, then nearest 0.5."""
    if len(labels) == 0:
        log.warning("empty validation split: fusing with equal weights")
        return 0.5
    best, best_key = None, None
    for w in grid:
        fused = fuse(p_a, p_b, w)
        key = (accuracy(fused, labels), mean_average_precision(fused, labels), -abs(w - 0.5))
        if best_key is None or key > best_key:
            best, best_key = float(w), key
    return best


# --------------------------------------------------------------------------- backbones


class TinyNet(nn.Module):
    """A three-convolution classifier for unit tests and smoke runs."""

    def __init__(self, num_classes: int):
        super().__init__()
        layers, c_in = [], 3
        for c_out in (16, 32, 64):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def _replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap the last Linear layer of a torchvision classifier for a fresh one with ``num_classes`` outputs."""
    name = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, leaf) if not leaf.isdigit() else parent[int(leaf)]
    new = nn.Linear(old.in_features, num_classes)
    if leaf.isdigit():
        parent[int(leaf)] = new
    else:
        setattr(parent, leaf, new)


def build_backbone(name: str, num_classes: int, pretrained: str | None) -> tuple[nn.Module, str]:
    """(classifier, phrase for the log saying how it was initialised)."""
    if name == "tiny":
        return TinyNet(num_classes), "random initialisation (tiny test network)"
    from torchvision.models import get_model, get_model_weights, list_models

    if name not in list_models():
        raise ValueError(f"recognize.backbone: unknown torchvision model {name!r}")
    if pretrained in (None, "", "none", "random"):
        return get_model(name, weights=None, num_classes=num_classes), "random initialisation (none asked for)"
    if pretrained.lower() != "imagenet":
        model = get_model(name, weights=None)
        state = torch.load(Path(pretrained).expanduser(), map_location="cpu", weights_only=False)
        model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        _replace_head(model, num_classes)
        return model, f"weights from {pretrained}; new classification head"
    weights = get_model_weights(name).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not cached.is_file():
        log.warning("ImageNet weights for %s are not in the torch hub cache (%s); random initialisation", name,
                    cached)
        return get_model(name, weights=None, num_classes=num_classes), \
            "random initialisation (ImageNet weights not available offline)"
    model = get_model(name, weights=None)
    model.load_state_dict(weights.get_state_dict(progress=False, check_hash=False))
    _replace_head(model, num_classes)
    return model, f"ImageNet weights ({weights}, {cached}); new classification head"


# --------------------------------------------------------------------------- hallucination


@torch.no_grad()
def hallucinate(model: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 32) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32 flow images in the network range [-1, 1].

    Images whose size is not a multiple of 2**levels are resized up to the next
    multiple for the network, and its output back (the transfer setting, where
    the checkpoint was trained at another size).
    """
    model = model.to(device).eval()
    n, h, w = images.shape[:3]
    factor = 2 ** model.config.num_levels
    hh, ww = math.ceil(h / factor) * factor, math.ceil(w / factor) * factor
    out = np.zeros((n, 3, h, w), np.float32)
    for start in range(0, n, batch_size):
        x = torch.from_numpy(np.transpose(images[start:start + batch_size], (0, 3, 1, 2)).astype(np.float32))
        x = (x / 127.5 - 1.0).to(device)
        if (hh, ww) != (h, w):
            x = F.interpolate(x, size=(hh, ww), mode="bilinear", align_corners=False)
        y = model(x)
        if (hh, ww) != (h, w):
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        out[start:start + len(x)] = y.clamp(-1, 1).cpu().numpy()
    return out


def rgb_to_network(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return np.transpose(images, (0, 3, 1, 2)).astype(np.float32) / 127.5 - 1.0


# --------------------------------------------------------------------------- one stream


def _prepare(x: torch.Tensor, input_size: int | None) -> torch.Tensor:
    """[-1, 1] 3-channel input -> ImageNet-normalised network input."""
    if input_size is not None and tuple(x.shape[-2:]) != (input_size, input_size):
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return ((x + 1.0) * 0.5 - mean) / std


def _augment(x: np.ndarray, rng: np.random.Generator, is_flow: bool, pad: int = 4) -> np.ndarray:
    """Random horizontal flip (mirrored motion: cos changes sign) and a random shift of up to ``pad`` px."""
    if rng.random() < 0.5:
        x = x[..., ::-1].copy()
        if is_flow:
            x[1] = -x[1]
    h, w = x.shape[1:]
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    top, left = rng.integers(0, 2 * pad + 1, size=2)
    return padded[:, top:top + h, left:left + w]


def train_stream(x_train: np.ndarray, y_train: np.ndarray, evaluate: dict[str, np.ndarray], num_classes: int,
                 cfg: RecognizeConfig, seed: int, is_flow: bool, device: torch.device, name: str = "stream"
                 ) -> dict[str, np.ndarray]:
    """Train one stream on (N, 3, H, W) inputs in [-1, 1]; softmax scores for each array of ``evaluate``."""
    tu.seed_everything(seed)
    model, how = build_backbone(cfg.backbone, num_classes, cfg.pretrained)
    log.info("%s: %s %s (seed %d), %d training images", name, cfg.backbone, how, seed, len(y_train))
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batch = tu.effective_batch_size(len(y_train), cfg.batch_size)
    step, started, loss_value = 0, time.time(), float("nan")
    n_steps = cfg.epochs * (len(y_train) // batch)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(n_steps, 1))
    model.train()
    progress = tqdm(total=n_steps, desc=name, unit="step", mininterval=10)
    for epoch in range(cfg.epochs):
        for indices in tu.epoch_batches(len(y_train), batch, seed, epoch):
            rng = np.random.default_rng((seed, epoch, step))
            xb = np.stack([_augment(x_train[i], rng, is_flow) for i in indices])
            xb = _prepare(torch.from_numpy(xb).to(device), cfg.input_size)
            yb = torch.from_numpy(y_train[indices]).to(device)
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            loss_value = float(loss.detach())
            progress.update(1)
    progress.close()
    # Precise BatchNorm statistics from the (unaugmented) training images: few steps leave the
    # running averages behind the weights.
    plain = [torch.from_numpy(x_train[i:i + batch]) for i in range(0, len(y_train), batch)]
    tu.recalibrate_batchnorm(model, plain, lambda m, b: m(_prepare(b.to(device), cfg.input_size)))
    model.eval()
    scores = {}
    with torch.no_grad():
        for key, x in evaluate.items():
            probs = [torch.softmax(model(_prepare(torch.from_numpy(x[i:i + 64]).to(device), cfg.input_size)), 1)
                     for i in range(0, len(x), 64)]
            scores[key] = torch.cat(probs).cpu().numpy() if probs else np.zeros((0, num_classes), np.float32)
    log.info("%s: %d steps in %.1f s, final training loss %.3f", name, step, time.time() - started, loss_value)
    return scores


# --------------------------------------------------------------------------- the experiment


def run_experiment(train: StaticSet, test: StaticSet, im2flow_checkpoint: str | os.PathLike | None,
                   cfg: RecognizeConfig, static_name: str = "static", im2flow_name: str = "Im2Flow"
                   ) -> dict:
    """Train every stream, fuse, score on test. Returns rows (Table 2), per-repeat details and scores."""
    if train.class_names != test.class_names:
        raise ValueError("train and test static sets name different classes")
    if len(cfg.seeds) < 2 or cfg.seeds[0] == cfg.seeds[1]:
        raise ValueError("recognize.seeds needs two different seeds (the appearance + appearance baseline)")
    device = tu.choose_device(cfg.device)
    num_classes = len(train.class_names)
    inputs: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {
        "appearance": (rgb_to_network(train.images), rgb_to_network(test.images), False)}
    magnitude_clip = None
    if im2flow_checkpoint is not None:
        from models.unet import load_im2flow

        generator = load_im2flow(im2flow_checkpoint, map_location=device)
        magnitude_clip = float(torch.load(im2flow_checkpoint, map_location="cpu", weights_only=False)
                               .get("magnitude_clip", 30.0))
        started = time.time()
        inputs["motion"] = (hallucinate(generator, train.images, device, cfg.hallucinate_batch),
                            hallucinate(generator, test.images, device, cfg.hallucinate_batch), True)
        log.info("hallucinated flow for %d images in %.1f s (checkpoint %s)", len(train) + len(test),
                 time.time() - started, im2flow_checkpoint)
    if cfg.ground_truth_motion and train.true_flow is not None and test.true_flow is not None:
        clip = magnitude_clip or 30.0  # the Im2Flow checkpoint's scale, so true and hallucinated flow match
        inputs["gt_motion"] = (to_network(train.true_flow, clip), to_network(test.true_flow, clip), True)

    streams = {"appearance": ("appearance", 0), "appearance_2": ("appearance", 1)}
    streams.update({k: (k, 0) for k in ("motion", "gt_motion") if k in inputs})
    repeats, all_scores = [], {}
    for r in range(cfg.repeats):
        tr, va = stratified_split(train.labels, cfg.validation_fraction, seed=cfg.seeds[0] + 7919 * r)
        scores = {}
        for stream, (source, which_seed) in streams.items():
            x_tr, x_te, is_flow = inputs[source]
            seed = cfg.seeds[which_seed] + 1000 * r
            scores[stream] = train_stream(x_tr[tr], train.labels[tr], {"val": x_tr[va], "test": x_te}, num_classes,
                                          cfg, seed, is_flow, device, name=f"{stream} (repeat {r})")
            for part in ("val", "test"):
                all_scores[f"r{r}/{stream}/{part}"] = scores[stream][part]
        y_val, y_test = train.labels[va], test.labels
        rows = {}
        for stream in streams:
            rows[stream] = dict(weight=None, accuracy=accuracy(scores[stream]["test"], y_test),
                                mAP=mean_average_precision(scores[stream]["test"], y_test),
                                val_accuracy=accuracy(scores[stream]["val"], y_val))
        for other in [s for s in streams if s != "appearance"]:
            w = choose_fusion_weight(scores["appearance"]["val"], scores[other]["val"], y_val, cfg.fusion_grid)
            fused = fuse(scores["appearance"]["test"], scores[other]["test"], w)
            rows[f"appearance+{other}"] = dict(weight=w, accuracy=accuracy(fused, y_test),
                                               mAP=mean_average_precision(fused, y_test),
                                               val_accuracy=accuracy(fuse(scores["appearance"]["val"],
                                                                          scores[other]["val"], w), y_val))
        repeats.append(dict(repeat=r, n_train=len(tr), n_val=len(va), n_test=len(y_test), rows=rows))
    all_scores["val_indices_r0"] = stratified_split(train.labels, cfg.validation_fraction, seed=cfg.seeds[0])[1]
    all_scores["test_labels"] = test.labels
    return dict(rows=table_rows(repeats, im2flow_name), repeats=repeats, scores=all_scores,
                static_name=static_name, im2flow_name=im2flow_name, class_names=train.class_names,
                n_train=len(train), n_test=len(test), config=asdict(cfg), magnitude_clip=magnitude_clip,
                device=str(device))


# (key, group, configuration) in the order of the paper's Table 2; {src} is the Im2Flow training set.
TABLE_ROWS = [
    ("appearance", "One-Stream", "Appearance Stream"),
    ("motion", "One-Stream", "Motion Stream (Ours-{src})"),
    ("gt_motion", "One-Stream", "Motion Stream (Ground-truth Motion)"),
    ("appearance+appearance_2", "Two-Stream", "Appearance + Appearance"),
    ("appearance+motion", "Two-Stream", "Appearance + Motion (Ours-{src})"),
    ("appearance+gt_motion", "Two-Stream", "Appearance + Motion (Ground-truth Motion)"),
]


def table_rows(repeats: list[dict], im2flow_name: str) -> list[dict]:
    """Mean (and standard deviation over repeats) of each configuration's test accuracy and mAP, in %."""
    rows = []
    for key, group, label in TABLE_ROWS:
        found = [r["rows"][key] for r in repeats if key in r["rows"]]
        if not found:
            continue
        acc = np.array([f["accuracy"] for f in found]) * 100
        maps = np.array([f["mAP"] for f in found]) * 100
        weights = [f["weight"] for f in found if f["weight"] is not None]
        rows.append(dict(key=key, group=group, configuration=label.format(src=im2flow_name),
                         accuracy=float(acc.mean()), accuracy_std=float(acc.std()), mAP=float(maps.mean()),
                         mAP_std=float(maps.std()),
                         appearance_weight=float(np.mean(weights)) if weights else None, repeats=len(found)))
    return rows


def verdict(result: dict) -> str:
    """The closing note: does appearance + motion beat appearance + appearance?"""
    by_key = {r["key"]: r for r in result["rows"]}
    base = by_key.get("appearance+appearance_2")
    ours = by_key.get("appearance+motion")
    if base is None or ours is None:
        return "No hallucinated-motion stream (no Im2Flow checkpoint): nothing to compare."
    acc_d, map_d = ours["accuracy"] - base["accuracy"], ours["mAP"] - base["mAP"]
    if acc_d > 0 or (acc_d == 0 and map_d > 0):
        word = "beats"
    elif acc_d == 0 and map_d == 0:
        word = "ties with"
    else:
        word = "does not beat"
    n = result["repeats"][0]["n_test"]
    text = (f"Appearance + Motion (Ours-{result['im2flow_name']}) {word} Appearance + Appearance: accuracy "
            f"{ours['accuracy']:.1f} % vs {base['accuracy']:.1f} % ({acc_d:+.1f} points), mAP {ours['mAP']:.1f} % "
            f"vs {base['mAP']:.1f} % ({map_d:+.1f} points), on {n} test images")
    if len(result["repeats"]) > 1:
        text += (f", mean of {len(result['repeats'])} repeats (std accuracy {ours['accuracy_std']:.1f} / "
                 f"{base['accuracy_std']:.1f} points)")
    return text + "."


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.1f}" + (f" ± {std:.1f}" if std else "")


def write_tables(result: dict, out_dir: str | os.PathLike) -> None:
    """table.csv, table.md, metrics.json and scores.npz in ``out_dir``."""
    out_dir = Path(out_dir)
    fields = ["group", "configuration", "accuracy", "accuracy_std", "mAP", "mAP_std", "appearance_weight",
              "repeats", "static_dataset", "im2flow_source", "n_test"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in result["rows"]:
        writer.writerow({**{k: row[k] for k in fields if k in row}, "static_dataset": result["static_name"],
                         "im2flow_source": result["im2flow_name"], "n_test": result["n_test"],
                         "accuracy": f"{row['accuracy']:.2f}", "accuracy_std": f"{row['accuracy_std']:.2f}",
                         "mAP": f"{row['mAP']:.2f}", "mAP_std": f"{row['mAP_std']:.2f}",
                         "appearance_weight": "" if row["appearance_weight"] is None
                         else f"{row['appearance_weight']:.2f}"})
    write_text(out_dir / "table.csv", buf.getvalue())
    cfg = result["config"]
    lines = [f"Static-image action recognition on **{result['static_name']}** ({result['n_train']} train / "
             f"{result['n_test']} test images, {len(result['class_names'])} classes); "
             + (f"hallucinated motion from Im2Flow trained on **{result['im2flow_name']}**"
                if result["magnitude_clip"] is not None else "no Im2Flow checkpoint (no hallucinated motion)")
             + f". Backbone {cfg['backbone']} per stream; fusion "
             f"weight on appearance chosen on a {cfg['validation_fraction']:.0%} validation split of the "
             f"training set; {len(result['repeats'])} repeat(s).", "",
             "| | Configuration | Accuracy (%) | mAP (%) | Appearance weight |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['group']} | {row['configuration']} | {_fmt(row['accuracy'], row['accuracy_std'])} | "
                     f"{_fmt(row['mAP'], row['mAP_std'])} | {_fmt(row['appearance_weight']) if row['appearance_weight'] is not None else ''} |")
    lines += ["", verdict(result), ""]
    write_text(out_dir / "table.md", "\n".join(lines))
    meta = {k: v for k, v in result.items() if k != "scores"}
    meta["verdict"] = verdict(result)
    write_text(out_dir / "metrics.json", json.dumps(meta, indent=2, default=float) + "\n")
    save_npz(out_dir / "scores.npz", **result["scores"])


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
    torch.set_num_threads(max(1, args.threads))
    values = {k: v for k, v in tu.read_config_arg(args.config_json).items() if k not in RULE_ONLY_KEYS}
    cfg = tu.config_from_mapping(RecognizeConfig, values, "recognize")
    if args.images_root:
        train, test = load_image_folder(args.images_root, tuple(args.image_size), args.test_fraction)
    else:
        if not args.train_shards or not args.test_shards:
            raise SystemExit("give --train-shards and --test-shards, or --images-root")
        train, test = load_static_shards(args.train_shards), load_static_shards(args.test_shards)
    log.info("static dataset %s: %d train, %d test images, classes %s", args.static_name, len(train), len(test),
             train.class_names)
    result = run_experiment(train, test, args.im2flow, cfg, args.static_name, args.im2flow_name)
    write_tables(result, args.out_dir)
    log.info("%s", verdict(result))
    return 0
