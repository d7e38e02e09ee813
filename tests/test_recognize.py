"""Static-image action recognition (Table 2): centre frames, fusion, mAP, still-image folders, a tiny run."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch

import h5py
import json as _json

from pipeline.cli import main as cli_main
from pipeline.recognize import experiment as rec
from pipeline.recognize.scoring import accuracy, average_precision, choose_fusion_weight, fuse, \
    mean_average_precision
from pipeline.recognize.static_sets import StaticSet, stratified_split, write_image_folder
from pipeline.recognize.tables import TABLE_ROWS, write_tables
from pipeline.data.demo import CLASSES, render_video
from pipeline.encoding import encode
from pipeline.data.frames import Sampling, decode_samples, sample_indices
from pipeline.data.shards import write_shard
from pipeline.data.targets import video_targets
from pipeline.flow import make_estimator


def test_centre_policy_picks_the_middle_usable_frame():
    assert sample_indices(24, "centre") == [11]
    assert sample_indices(25, "centre") == [12]
    assert sample_indices(8, "centre") == [2]     # the middle (3) has no five future frames: the last usable
    assert sample_indices(5, "centre") == []


def test_centre_frame_and_its_true_flow_reach_a_static_shard(demo_root, tmp_path):
    video = demo_root / "CarDrive" / "v_CarDrive_g01_c01.avi"       # 14 frames: centre frame 6
    centre = Sampling((48, 48), policy="centre")
    decoded = decode_samples(video, centre)
    assert decoded.sample_indices == [6] and decoded.frame_indices == list(range(6, 12))  # and its five successors
    flow = video_targets(video, centre, make_estimator("tvl1", warps=3, nscales=3), "CarDrive/v_CarDrive_g01_c01", 3)
    rendered, truth = render_video("CarDrive", 7 * 1_000_003 + CLASSES.index("CarDrive") * 1009 + 1, (96, 128), 14)
    expected = cv2.resize(rendered[6], (48, 48), interpolation=cv2.INTER_AREA)
    assert np.abs(flow.frames[0].astype(int) - expected.astype(int)).mean() < 6
    assert flow.ok and flow.targets.shape == (1, 48, 48, 2)
    # the car drives horizontally: the five-future-frame mean flow is mostly along x, in the rendered direction
    true_u = truth[6:11, ..., 0].mean(axis=0)
    moving = np.abs(true_u) > 0.5
    est_u = cv2.resize(flow.targets[0, ..., 0], (128, 96))
    assert np.sign(est_u[moving].mean()) == np.sign(true_u[moving].mean())
    write_shard([flow], tmp_path / "s.h5", frame_size=(48, 48), class_names=list(CLASSES), estimator="tvl1",
                estimator_params={}, split="test", shard_index=0, magnitude_clip=8.0)
    static = StaticSet([tmp_path / "s.h5"])
    assert len(static) == 1 and static.labels.tolist() == [3] and static.class_names == list(CLASSES)
    assert static.has_flow and static.magnitude_clip == 8.0
    np.testing.assert_array_equal(static.frames.row(0), flow.frames[0])
    np.testing.assert_allclose(static.flow.row(0).astype(np.float32), encode(flow.targets)[0], atol=0.02)


def test_fusion_weight_selection_finds_the_known_best_weight():
    """Two samples, two classes. Fused margin w*a + (1-w)*b of the true class: sample 0 is right only for
    w > 0.65, sample 1 only for w < 0.75, so 0.7 is the one grid weight that gets both right."""
    def probs(margins):                       # 2-class softmax scores whose true-class margin is `margin`
        m = np.asarray(margins, float)
        return np.stack([0.5 + m / 2, 0.5 - m / 2], axis=1)

    labels = np.array([0, 0])
    a_margin = np.array([0.35, -0.25])        # sample 1: appearance is wrong
    b_margin = np.array([-0.65, 0.75])        # sample 0: the other stream is wrong
    # sample 0: 0.35w - 0.65(1-w) > 0 <=> w > 0.65;  sample 1: -0.25w + 0.75(1-w) > 0 <=> w < 0.75
    p_a, p_b = probs(a_margin), probs(b_margin)
    grid = [round(0.1 * i, 1) for i in range(11)]
    assert choose_fusion_weight(p_a, p_b, labels, grid) == pytest.approx(0.7)
    assert accuracy(fuse(p_a, p_b, 0.7), labels) == 1.0
    assert accuracy(fuse(p_a, p_b, 0.6), labels) == 0.5 and accuracy(fuse(p_a, p_b, 0.8), labels) == 0.5
    # swapping the streams mirrors the weight
    assert choose_fusion_weight(p_b, p_a, labels, grid) == pytest.approx(0.3)


def test_average_precision_and_map_against_hand_computed_values():
    # ranked: + - + - +  -> precision at the positives 1/1, 2/3, 3/5
    ap = average_precision(np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 0, 1, 0, 1]))
    assert ap == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # order of the input does not matter, only the scores
    assert average_precision(np.array([0.5, 0.9, 0.6, 0.7, 0.8]), np.array([1, 1, 0, 1, 0])) == pytest.approx(ap)
    assert np.isnan(average_precision(np.array([0.1, 0.2]), np.array([0, 0])))
    scores = np.array([[0.7, 0.2, 0.1],
                       [0.6, 0.3, 0.1],
                       [0.2, 0.5, 0.3],
                       [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, 1, 2])
    # every class's positives rank first: AP 1 for each
    assert mean_average_precision(scores, labels) == pytest.approx(1.0)
    scores[0, 1] = 0.9           # class 1 ranking: 0.9(-) 0.5(+) 0.3(+) -> AP (1/2 + 2/3) / 2
    assert mean_average_precision(scores, labels) == pytest.approx((1 + (1 / 2 + 2 / 3) / 2 + 1) / 3)
    assert accuracy(scores, labels) == pytest.approx(2 / 4)


def _write_image(path, colour, size=(20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.zeros((*size, 3), np.uint8)
    image[:] = colour
    cv2.imwrite(str(path), image)


def test_still_image_folder_loader(tmp_path, caplog):
    root = tmp_path / "willow"
    for split, n in (("train", 3), ("test", 2)):
        for c, colour in (("jumping", (0, 0, 255)), ("riding_horse", (0, 255, 0))):
            for i in range(n):
                _write_image(root / split / c / f"{i}.jpg", colour)
    (root / "train" / "jumping" / "broken.png").write_text("not an image")
    train, test = (StaticSet([p]) for p in write_image_folder(root, (16, 16), tmp_path))
    assert train.class_names == test.class_names == ["jumping", "riding_horse"]
    assert len(train) == 6 and len(test) == 4 and not train.has_flow
    images = train.frames.rows(range(len(train)))
    assert images.shape == (6, 16, 16, 3) and images.dtype == np.uint8
    # class = folder; OpenCV's BGR red (0, 0, 255) comes back as RGB red
    red = images[train.labels == 0]
    assert (red[..., 0] > 200).all() and (red[..., 1] < 50).all()
    assert any("broken.png" in r.getMessage() for r in caplog.records)
    # an unsplit folder (class folders only) is split by a stable hash of the path
    flat = tmp_path / "flat"
    for c in ("a", "b"):
        for i in range(20):
            _write_image(flat / c / f"{i}.png", (i * 10, 0, 0))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tr1, te1 = (StaticSet([p]) for p in write_image_folder(flat, (8, 8), tmp_path / "a", test_fraction=0.3))
    tr2, te2 = (StaticSet([p]) for p in write_image_folder(flat, (8, 8), tmp_path / "b", test_fraction=0.3))
    assert te1.ids == te2.ids and 0 < len(te1) < 40 and len(tr1) + len(te1) == 40
    assert not set(tr1.ids) & set(te1.ids)


def test_stratified_validation_split_keeps_every_class():
    labels = np.repeat(np.arange(6), 6)
    train, val = stratified_split(labels, 0.34, seed=0)
    assert len(val) == 12 and sorted(np.bincount(labels[val]).tolist()) == [2] * 6
    assert not set(train) & set(val) and len(train) + len(val) == 36
    assert (stratified_split(labels, 0.34, seed=0)[1] == val).all()


def _tiny_im2flow(path, clip=8.0):
    from models.unet import build_unet

    torch.manual_seed(0)
    model = build_unet("tiny")
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict(), "magnitude_clip": clip}, path)
    return path


def _synthetic(path, n_per_class, seed, size=32):
    """Two classes that look alike (a random-colour square) and differ in motion: up (0) or down (1),
    written as a static set (frames, true flow in px, labels)."""
    rng = np.random.default_rng(seed)
    images, flows, labels = [], [], []
    for label in (0, 1):
        for _ in range(n_per_class):
            img = rng.integers(60, 200, (size, size, 3)).astype(np.uint8)
            top, left = rng.integers(4, size - 14, 2)
            img[top:top + 10, left:left + 10] = rng.integers(0, 256, 3)
            raw = np.zeros((size, size, 2), np.float32)
            raw[top:top + 10, left:left + 10, 1] = -3.0 if label == 0 else 3.0
            images.append(img)
            flows.append(encode(raw))
            labels.append(label)
    with h5py.File(path, "w") as f:
        f["frames"], f["flow"] = np.stack(images), np.stack(flows).astype(np.float16)
        f["labels"] = np.array(labels, np.int64)
        f.create_dataset("video_ids", data=np.array([f"v{i}" for i in range(len(labels))], dtype=object),
                         dtype=h5py.string_dtype())
        f.attrs["class_names"], f.attrs["magnitude_clip"] = _json.dumps(["Up", "Down"]), 8.0
    return StaticSet([path])


def test_tiny_end_to_end_recognition_tables(tmp_path):
    """Appearance says nothing about the class, true motion says everything: the motion stream must win,
    fusion must lean on it, and every number in the table must follow from the saved scores."""
    cfg = rec.RecognizeConfig(backbone="tiny", pretrained=None, epochs=8, batch_size=8, lr=0.01,
                              validation_fraction=0.25, fusion_grid=[0.0, 0.25, 0.5, 0.75, 1.0])
    result = rec.run_experiment(_synthetic(tmp_path / "tr.h5", 8, 0), _synthetic(tmp_path / "te.h5", 6, 1),
                                _tiny_im2flow(tmp_path / "im2flow.pt"), cfg, static_name="synthetic",
                                im2flow_name="tiny")
    rows = {r["key"]: r for r in result["rows"]}
    assert list(rows) == [k for k, _, _ in TABLE_ROWS]
    assert rows["gt_motion"]["accuracy"] >= 75.0        # true motion separates the classes
    assert rows["appearance+gt_motion"]["appearance_weight"] <= 0.5   # fusion leans on the informative stream
    scores, y = result["scores"], result["scores"]["test_labels"]
    assert y.tolist() == [0] * 6 + [1] * 6
    for key in ("appearance", "motion", "gt_motion"):
        assert rows[key]["accuracy"] == pytest.approx(100 * accuracy(scores[f"r0/{key}/test"], y))
        assert rows[key]["mAP"] == pytest.approx(100 * mean_average_precision(scores[f"r0/{key}/test"], y))
    w = rows["appearance+gt_motion"]["appearance_weight"]
    fused = fuse(scores["r0/appearance/test"], scores["r0/gt_motion/test"], w)
    assert rows["appearance+gt_motion"]["accuracy"] == pytest.approx(100 * accuracy(fused, y))
    val = scores["val_indices_r0"]
    assert len(val) == 4 and w == choose_fusion_weight(scores["r0/appearance/val"], scores["r0/gt_motion/val"],
                                                       np.array([0] * 2 + [1] * 2), cfg.fusion_grid)
    write_tables(result, tmp_path / "out")
    with open(tmp_path / "out" / "table.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [t["configuration"] for t in table][:2] == ["Appearance Stream", "Motion Stream (Ours-tiny)"]
    md = (tmp_path / "out" / "table.md").read_text()
    assert "| Two-Stream | Appearance + Appearance |" in md and "Appearance + Appearance:" in md
    assert "validation split of 4 training images" in md
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["verdict"] in md


def test_cli_on_a_still_image_folder_with_a_transferred_checkpoint(tmp_path):
    """Transfer setting: the Im2Flow network (32 px, 5 levels) meets 24x40 stills it was not trained on."""
    root = tmp_path / "stills"
    rng = np.random.default_rng(0)
    for c, channel in (("a", 0), ("b", 2)):
        for i in range(6):
            colour = [int(x) for x in rng.integers(0, 80, 3)]
            colour[channel] = 220
            _write_image(root / c / f"{i}.png", colour, size=(24, 24))
    config = json.dumps({"backbone": "tiny", "pretrained": None, "epochs": 2, "batch_size": 4, "repeats": 2,
                         "enabled": True, "source": "images", "threads": 1})
    code = cli_main(["recognize", "--images-root", str(root), "--image-size", "24", "40", "--test-fraction", "0.3",
                     "--im2flow", str(_tiny_im2flow(tmp_path / "ckpt.pt")), "--im2flow-name", "UCF",
                     "--static-name", "stills", "--config-json", config, "--out-dir", str(tmp_path / "out")])
    assert code == 0
    with open(tmp_path / "out" / "table.csv") as fh:
        table = list(csv.DictReader(fh))
    names = [t["configuration"] for t in table]
    assert "Appearance + Motion (Ours-UCF)" in names
    assert not any("Ground-truth" in n for n in names)   # still images have no true flow: no upper bound row
    assert all(t["repeats"] == "2" and t["static_dataset"] == "stills" for t in table)


@pytest.mark.parametrize("layout, words", [
    ({"a": (6, 2), "b": (2, 2)}, "fewer than recognize.min_train_per_class = 3 training images: b (2)"),
    ({"a": (6, 2), "b": (6, 2), "c": (0, 2)}, "test class(es) with no training image: c"),
])
def test_recognition_refuses_a_meaningless_set_and_says_why(tmp_path, layout, words):
    """Too few training images in a class, or a test class never seen in training: no table, no
    fusion weight claimed; table.md and metrics.json say why (the report shows table.md)."""
    root = tmp_path / "stills"
    for c, (n_train, n_test) in layout.items():
        for split, n in (("train", n_train), ("test", n_test)):
            for i in range(n):
                _write_image(root / split / c / f"{i}.png", [40 * i, 200, 90], size=(24, 24))
        (root / "train" / c).mkdir(parents=True, exist_ok=True)
    config = json.dumps({"backbone": "tiny", "pretrained": None, "epochs": 1, "batch_size": 4, "enabled": True,
                         "source": "images", "threads": 1, "min_train_per_class": 3})
    code = cli_main(["recognize", "--images-root", str(root), "--image-size", "24", "24", "--im2flow",
                     str(_tiny_im2flow(tmp_path / "ckpt.pt")), "--config-json", config, "--out-dir",
                     str(tmp_path / "out")])
    assert code == 0
    table = (tmp_path / "out" / "table.md").read_text()
    assert table.startswith("**Not run.** Recognition refused") and words in table
    assert "validation" not in table and "fusion" not in table
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["refused"] in table
