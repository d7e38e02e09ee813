"""The presets follow the paper and the released code: every hyper-parameter pinned to its source.

A value that is not in the table below fails the test, so a preset cannot drift silently; a
deliberate deviation says so in its source column, with the reason."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO
from pipeline.config import validate

PAPER = "Im2Flow, CVPR 2018"
RELEASED = "released code (rhgao/Im2Flow, a pix2pix fork; ../shared/reference/facts.md)"

# dotted key -> (value in both presets, source)
SOURCES: dict[str, tuple[object, str]] = {
    "frames.size": ([286, 286], f"{RELEASED}: frames squashed to 286x286, then cropped to 256"),
    "frames.policy": ("per_video", f"{PAPER} Sec. 4: a fixed number of frames sampled from the training videos"),
    "flow.estimator": ("liu", f"{PAPER} Sec. 4.1: ground-truth flow computed with [53], Ce Liu's coarse-to-fine"),
    "shards.magnitude_clip": (30.0, f"{RELEASED}: B = min(M, 30) / 30"),
    "train.model": ("paper", f"{RELEASED}: pix2pix U-Net-256, 8 levels, 54.4 M parameters"),
    "train.init": ("pix2pix", f"{RELEASED}: pix2pix's weights_init, conv N(0, 0.02), BatchNorm N(1, 0.02), bias 0"),
    "train.dropout": (0.5, f"{RELEASED}: dropout 0.5 on the first three decoder blocks"),
    "train.batch_size": (32, f"{PAPER} Sec. 4: minibatch SGD with a batch size of 32"),
    "train.lr": (0.0002, f"{RELEASED}: Adam lr 2e-4"),
    "train.beta1": (0.5, f"{RELEASED}: Adam beta1 0.5"),
    "train.epochs": (30, f"{RELEASED}: 30 epochs"),
    "train.lr_decay_every": (10, f"{RELEASED}: lr halved every 10 epochs"),
    "train.lr_decay_factor": (0.5, f"{RELEASED}: lr halved every 10 epochs"),
    "train.crop": (256, f"{PAPER} Sec. 4: randomly cropped windows; {RELEASED}: fineSize 256"),
    "train.flip": (True, f"{PAPER} Sec. 4: random horizontal flips"),
    "train.content_weight": (0.02, f"{PAPER} Eq. 2 and Sec. 4: lambda = 0.02"),
    "motion_net.pretrained": ("imagenet", f"{RELEASED}: ResNet-18 fine-tuned on UCF-101 flow images"),
    "motion_net.input_size": (224, f"{RELEASED}: flow image upsampled to 224, ImageNet-normalised"),
    "motion_net.crop": (256, "pipeline choice (the paper gives no schedule): the U-Net's 256 crops of 286 frames"),
    "motion_net.batch_size": (64, "pipeline choice (the paper gives no schedule)"),
    "motion_net.epochs": (20, "pipeline choice (the paper gives no schedule)"),
    "motion_net.lr": (0.001, "pipeline choice (the paper gives no schedule)"),
    "evaluate.baseline_params.nearest_neighbour.features": (
        "resnet18", f"deviation: {PAPER} Sec. 4.1 uses AlexNet pool5; ResNet-18 features are the pipeline's one "
        "ImageNet backbone"),
    "evaluate.baseline_params.nearest_neighbour.weights": ("imagenet", f"{PAPER} Sec. 4.1: a pre-trained network"),
    "evaluate.baseline_params.nearest_neighbour.input_size": (224, "the backbone's ImageNet input size"),
    "evaluate.baseline_params.codebook.n_codewords": (40, "Walker et al.'s released model: a 40-way softmax"),
    "evaluate.baseline_params.codebook.grid": (20, "Walker et al.'s released model: a 20x20 grid of cells"),
    "evaluate.baseline_params.codebook.input_size": (200, "Walker et al.'s released model: 200x200 input"),
    "evaluate.flip_average": (False, f"{PAPER} Table 1: single predictions"),
    "recognize.backbone": ("resnet18", f"deviation: {PAPER} Sec. 4 uses AlexNet with BatchNorm in Caffe, which "
                                       "torchvision does not ship"),
    "recognize.input_size": (224, "deviation: ResNet-18's 224 for Caffe AlexNet's 227"),
    "recognize.batch_size": (64, "pipeline choice (the paper gives none)"),
}

# values that differ between the presets: the dataset's size
PER_DATASET: dict[str, dict[str, tuple[object, str]]] = {
    "ucf101": {
        "frames.per_video": (53, f"{PAPER} Sec. 4: 500,000 UCF-101 frames (9,537 training videos x 53 = 505,461)"),
        "shards.per_split": (128, "pipeline choice: ~75 training videos a shard (adding a video rewrites one)"),
    },
    "hmdb51": {
        "frames.per_video": (56, f"{PAPER} Sec. 4: 200,000 HMDB-51 frames (3,570 training videos x 56 = 199,920)"),
        "shards.per_split": (64, "pipeline choice: ~56 training videos a shard"),
    },
}

# not hyper-parameters: where the data is, how the machine runs it
RUNTIME = ("name", "dataset.", "demo.", "resources.", "gpu_rules.", "flow.params.", "flow.threads", "num_workers",
           "shards.codec")


def _leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= _leaves(value, path + ".")
        else:
            out[path] = value
    return out


@pytest.mark.parametrize("name", ["ucf101", "hmdb51"])
def test_every_preset_value_has_its_source(name):
    preset = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    validate(yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text()))
    table = SOURCES | PER_DATASET[name]
    leaves = {k: v for k, v in _leaves(preset).items() if not any(r in k for r in RUNTIME)}
    unsourced = sorted(set(leaves) - set(table))
    assert not unsourced, f"{name}: preset values without a source: {unsourced}"
    for key, (value, source) in table.items():
        assert key in leaves, f"{name}: {key} ({source}) is missing from the preset"
        assert leaves[key] == value, f"{name}: {key} = {leaves[key]!r}, the source says {value!r} ({source})"


@pytest.mark.parametrize("name", ["ucf101", "hmdb51"])
def test_the_crop_is_a_real_crop_and_each_rule_asks_for_resources(name):
    preset = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    assert preset["frames"]["size"][0] > preset["train"]["crop"]
    assert preset["frames"]["size"][0] > preset["motion_net"]["crop"]
    resources = preset.get("resources", {})
    for rule in ("shard", "train_motion_net", "train_im2flow", "evaluate", "recognize", "report"):
        assert {"mem_mb", "runtime", "disk_mb"} <= set(resources.get(rule, {})), f"{name}: resources of {rule}"
