"""Stage 8-9: evaluation against baselines on tiny demo shards, motion potential, test-time resizing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import write_demo_shards
import torch

from pipeline.evaluate.evaluation import IM2FLOW, EvaluateConfig, evaluate, format_margins, margins, pick_figure_rows
from pipeline.evaluate.motion_potential import motion_potential, score_images, spearman
from models.unet import Im2FlowCheckpoint
from pipeline.inference import Im2FlowPredictor, InferenceOptions, network_size, set_bn_mode


SIZE = 40  # frames; the tiny U-Net sees them resized to 32 (its multiple), which tests the resize path


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, list[str]]:
    return write_demo_shards(tmp_path_factory.mktemp("eval_shards"), SIZE, videos_per_class=2, n_frames=9, train_parts=1)


@pytest.fixture(scope="module")
def checkpoint(shards, tmp_path_factory) -> Path:
    """A tiny U-Net trained for a few steps (pixel loss only): enough to exercise every path."""
    from pipeline.train.im2flow import TrainConfig, train

    out = tmp_path_factory.mktemp("im2flow")
    cfg = TrainConfig(model="tiny", batch_size=4, epochs=100, max_steps=4, crop=32, content_weight=0.0,
                      num_workers=0, log_every=2, checkpoint_every=10, lr=1e-3)
    train(shards["train"], out, cfg)
    return out / "checkpoint.pt"


FAST = dict(baselines=["zero", "mean", "nearest_neighbour", "codebook"],
            baseline_params={"nearest_neighbour": {"features": "histogram"},
                             "codebook": {"epochs": 2, "n_codewords": 8, "grid": 4, "input_size": 32}},
            figure_rows=3, motion_potential_rows=2, batch_size=8)


@pytest.fixture(scope="module")
def evaluation(shards, checkpoint, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("evaluation")
    summary = evaluate(shards["train"], shards["test"], checkpoint, out, EvaluateConfig(**FAST))
    return out, summary


def test_evaluate_writes_table_figures_and_provenance(evaluation, shards):
    out, summary = evaluation
    for name in ("table.csv", "table.md", "per_image.csv", "examples.png", "motion_potential.csv",
                 "motion_potential.png", "summary.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "table.csv")))
    methods = [r["method"] for r in rows]
    assert methods == ["Zero flow", "Mean training flow", "Nearest neighbour", "Codebook (Walker-style)", IM2FLOW]
    for r in rows:
        for m in ("EPE", "DS", "OS"):
            assert r[f"{m}_all"] != "" and np.isfinite(float(r[f"{m}_all"]))
        assert r["fg_mask"].startswith("opencv-saliency")
    zero = rows[0]
    assert float(zero["DS_all"]) == 0.0 and float(zero["OS_all"]) == 0.0  # zero vectors: 0, never NaN
    n_test = summary["n_test_images"]
    assert n_test == 6 * 2  # 6 classes x 1 test video x 2 sample frames
    per_image = list(csv.DictReader(open(out / "per_image.csv")))
    assert len(per_image) == 5 * n_test and {"video_id", "frame_index", "label_name"} <= set(per_image[0])
    md = (out / "table.md").read_text()
    assert "| Im2Flow |" in md and "margin over each baseline" in md
    saved = json.loads((out / "summary.json").read_text())
    assert set(saved["margins_all_pixels"]) == set(methods[:-1])
    assert "train" in saved["bn_mode_check"] and saved["bn_mode"] == "eval"
    # the inference not chosen (flip averaging on/off) is scored as well, and differs
    flip = saved["flip_average_check"]["flip_average=True"]
    assert saved["flip_average"] is False and set(flip) == set(methods)          # every method, both treatments
    assert flip[IM2FLOW]["EPE_all"] != pytest.approx(float(rows[-1]["EPE_all"]), abs=1e-9)
    assert flip["Zero flow"]["EPE_all"] == pytest.approx(float(rows[0]["EPE_all"]))  # mirroring zero changes nothing
    assert "same for every method" in md and "no flip averaging for any method" in md
    assert saved["methods"]["Nearest neighbour"].startswith("nearest") or "histogram" in saved["methods"]["Nearest neighbour"]


def test_evaluate_is_deterministic(evaluation, shards, checkpoint, tmp_path):
    out, _ = evaluation
    cfg = EvaluateConfig(**(FAST | {"baselines": ["zero", "codebook"]}))
    evaluate(shards["train"], shards["test"], checkpoint, tmp_path, cfg)
    first = {r["method"]: r for r in csv.DictReader(open(out / "table.csv"))}
    again = {r["method"]: r for r in csv.DictReader(open(tmp_path / "table.csv"))}
    for method in ("Zero flow", "Codebook (Walker-style)", IM2FLOW):
        assert first[method]["EPE_all"] == again[method]["EPE_all"], method


def test_motion_potential_csv_is_ranked(evaluation):
    out, summary = evaluation
    rows = list(csv.DictReader(open(out / "motion_potential.csv")))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    assert "spearman_vs_truth" in summary["motion_potential"]


def test_motion_potential_is_normalised_by_foreground_area():
    flow = np.zeros((10, 10, 2), np.float32)
    flow[:5, :, 0] = 3.0  # top half moves 3 px right
    top = np.zeros((10, 10), bool)
    top[:5] = True
    assert motion_potential(flow, top) == (pytest.approx(3.0), True)
    small = np.zeros((10, 10), bool)
    small[:2, :2] = True  # a smaller object moving as fast scores the same
    assert motion_potential(flow, small)[0] == pytest.approx(3.0)
    assert motion_potential(flow, np.zeros((10, 10), bool)) == (pytest.approx(1.5), False)  # empty mask: all pixels
    rows, summary = score_images(np.stack([flow, flow * 2, flow * 0]), np.stack([top] * 3),
                                 np.stack([flow, flow * 2, flow * 0]))
    assert [r["image"] for r in rows] == [1, 0, 2] and summary["spearman_vs_truth"] == pytest.approx(1.0)


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def test_margins_say_who_wins():
    table = [{"method": "Zero flow", "EPE_all": 2.0, "DS_all": 0.0}, {"method": IM2FLOW, "EPE_all": 1.5, "DS_all": 0.3}]
    m = margins(table)
    assert m == {"Zero flow": {"EPE_all": pytest.approx(0.5), "DS_all": pytest.approx(0.3)}}
    assert "beats every baseline" in format_margins(m) and "NOT" not in format_margins(m)
    table[1]["EPE_all"] = 2.5
    assert "does NOT beat" in format_margins(margins(table))


def test_figure_rows_cover_classes_first():
    labels = np.array([0, 0, 0, 1, 1, 2])
    rows = pick_figure_rows(labels, 4)
    assert len(rows) == 4 and {int(labels[i]) for i in rows[:3]} == {0, 1, 2} and len(set(rows)) == 4
    assert sorted(pick_figure_rows(labels, 10)) == list(range(6))


class _ConstantNet(torch.nn.Module):
    """Predicts 2 px of rightward motion everywhere (clip 8: magnitude channel -0.5), at network size."""

    class config:  # noqa: N801 (mimics UNetConfig's attribute)
        num_levels = 3

    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(3)
        self.seen: list[tuple[int, int]] = []

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        out = torch.zeros_like(x)
        out[:, 1] = 1.0  # cos = 1: motion to the right
        out[:, 2] = -0.5  # (−0.5 + 1) / 2 · 8 = 2 px
        return out


def _predictor(net, input_size=None):
    return Im2FlowPredictor(Im2FlowCheckpoint(net, 8.0, None, {}, "constant"), "cpu", InferenceOptions(input_size=input_size))


def test_inference_resizes_in_and_scales_flow_back():
    net = _ConstantNet()
    frames = np.zeros((2, 20, 36, 3), np.uint8)
    flow = _predictor(net, input_size=16)(frames)
    assert net.seen == [(16, 16)] and flow.shape == (2, 20, 36, 2)
    assert np.allclose(flow[..., 0], 2.0 * 36 / 16) and np.allclose(flow[..., 1], 0.0)
    same = _predictor(net)(np.zeros((1, 16, 24, 3), np.uint8))  # multiple of 8: no resizing
    assert net.seen[-1] == (16, 24) and np.allclose(same[..., 0], 2.0)
    assert network_size(net, (22, 38)) == (24, 40) and network_size(net, (3, 3)) == (8, 8)


def test_bn_modes():
    net = set_bn_mode(_ConstantNet(), "train")
    assert net.bn.training and net.bn.momentum == 0.0
    assert not set_bn_mode(net, "eval").bn.training
    with pytest.raises(ValueError, match="bn_mode"):
        set_bn_mode(net, "test")


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="evaluate.baselines"):
        EvaluateConfig(baselines=["zero", "oracle"])
    with pytest.raises(ValueError, match="evaluate.bn_mode"):
        EvaluateConfig(bn_mode="frozen")
