"""Training stages on tiny demo shards: outputs, kill/resume, motion-net accuracy, config errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import write_demo_shards
import torch

from pipeline.train import loop as tu
from pipeline.train.im2flow import TrainConfig, train
from pipeline.train.motion_net import MotionNetConfig, train_motion_net

SIZE = 40  # frames; training crops are 32 (the tiny U-Net's multiple)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, list[str]]:
    return write_demo_shards(tmp_path_factory.mktemp("shards"), SIZE)


MOTION_CFG = dict(pretrained=None, input_size=None, batch_size=8, epochs=100, max_steps=30, lr=1e-3, crop=32,
                  lr_decay_every=None, num_workers=0, log_every=5, checkpoint_every=10, bn_recalibration_batches=10)


@pytest.fixture(scope="module")
def motion_net(shards, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("motion")
    summary = train_motion_net(shards["train"], out, MotionNetConfig(**MOTION_CFG), test_shards=shards["test"])
    return out, summary


def test_motion_net_beats_chance_on_demo_classes(motion_net):
    """ResNet-18 from random init, 30 steps of batch 8 on true flow images (3 videos per class, 32² crops);
    tested on held-out videos (group 0) of the 6 demo classes: accuracy far above chance (1/6)."""
    out, summary = motion_net
    result = json.loads((out / "metrics.json").read_text())
    print(f"motion-net test accuracy {result['test_accuracy']:.3f} on {result['test_samples']} samples "
          f"(chance {result['chance']:.3f})")
    assert result["test_samples"] == 18
    assert result["test_accuracy"] >= 0.5, result
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["num_classes"] == 6 and ckpt["test_accuracy"] == result["test_accuracy"]
    assert (out / "loss_curve.png").stat().st_size > 0
    from models.motion_net import load_motion_net

    net = load_motion_net(out / "checkpoint.pt")
    assert not net.training and net.features(torch.zeros(1, 3, 32, 32)).shape == (1, 128, 4, 4)


def _im2flow_cfg(**overrides) -> TrainConfig:
    values = dict(model="tiny", dropout=0.5, batch_size=4, epochs=100, max_steps=6, crop=32, flip=True,
                  num_workers=0, checkpoint_every=2, log_every=1, lr_decay_every=1, lr=1e-3)
    return TrainConfig(**(values | overrides))


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=False)["model"]


def test_train_outputs_and_resume_is_bit_identical(shards, motion_net, tmp_path):
    """Killed after step 3 (last checkpoint at step 2), then rerun: the same weights, bit for bit, as a run
    that was never interrupted, with the content term, dropout, crops and flips on."""
    mn = motion_net[0] / "checkpoint.pt"
    cfg = _im2flow_cfg()
    whole = train(shards["train"], tmp_path / "whole", cfg, motion_net=mn)
    assert whole["step"] == 6 and not whole["stopped"]
    for name in ("checkpoint.pt", "last.pt", "metrics.csv", "loss_curve.png"):
        assert (tmp_path / "whole" / name).stat().st_size > 0
    assert not list((tmp_path / "whole").glob(".*partial"))

    stopped = train(shards["train"], tmp_path / "killed", cfg, motion_net=mn, stop_after_steps=3)
    assert stopped == {"stopped": True, "step": 3}
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=False)["step"] == 2
    assert not (tmp_path / "killed" / "checkpoint.pt").exists()
    # Snakemake deletes a killed job's declared outputs (metrics.csv) but not last.pt: the history
    # travels in last.pt, so the resumed run's metrics match the uninterrupted run's all the same
    (tmp_path / "killed" / "metrics.csv").unlink()
    resumed = train(shards["train"], tmp_path / "killed", cfg, motion_net=mn)
    assert resumed["step"] == 6

    a, b = _state(tmp_path / "whole" / "checkpoint.pt"), _state(tmp_path / "killed" / "checkpoint.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows_a = [(r["step"], r["loss"], r["lr"]) for r in csv.DictReader(open(tmp_path / "whole" / "metrics.csv"))]
    rows_b = [(r["step"], r["loss"], r["lr"]) for r in csv.DictReader(open(tmp_path / "killed" / "metrics.csv"))]
    assert rows_a == rows_b and len(rows_a) == 6  # the row of the lost step 3 was dropped and redone

    from models.unet import load_im2flow

    model = load_im2flow(tmp_path / "whole" / "checkpoint.pt").model
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    ckpt = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    assert ckpt["magnitude_clip"] == 8.0 and ckpt["model_config"]["channels"] == (8, 16, 32, 32, 32)


def test_resume_across_epochs_and_lr_decay(shards, tmp_path):
    """54 samples in batches of 8: 6 steps per epoch; 8 steps cross into epoch 1 (lr halves there).
    Killed at step 7, resumed from the checkpoint at step 6 (the start of epoch 1)."""
    cfg = _im2flow_cfg(content_weight=0.0, batch_size=8, max_steps=8, checkpoint_every=3, log_every=2)
    whole = train(shards["train"], tmp_path / "a", cfg)
    train(shards["train"], tmp_path / "b", cfg, stop_after_steps=7)
    train(shards["train"], tmp_path / "b", cfg)
    a, b = _state(tmp_path / "a" / "checkpoint.pt"), _state(tmp_path / "b" / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    lrs = [m["lr"] for m in whole["metrics"]]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(5e-4)


def test_changed_config_starts_from_scratch(shards, tmp_path, caplog):
    cfg = _im2flow_cfg(content_weight=0.0, max_steps=2)
    train(shards["train"], tmp_path, cfg, stop_after_steps=2)
    with caplog.at_level("WARNING"):
        summary = train(shards["train"], tmp_path, _im2flow_cfg(content_weight=0.0, max_steps=2, lr=5e-4))
    assert "different config" in caplog.text
    assert [m["step"] for m in summary["metrics"]] == [1, 2]


def test_cli_train_and_config_errors(shards, motion_net, tmp_path):
    from pipeline.cli import main

    config = json.dumps({"model": "tiny", "batch_size": 4, "crop": 32, "num_workers": 0, "log_every": 1})
    rc = main(["train", "--shards", *shards["train"], "--config-json", config, "--motion-net",
               str(motion_net[0] / "checkpoint.pt"), "--out", str(tmp_path / "cli"), "--max-steps", "2"])
    assert rc == 0 and (tmp_path / "cli" / "checkpoint.pt").is_file()
    with pytest.raises(ValueError, match="unknown key.*'bacth_size'"):
        main(["train", "--shards", *shards["train"], "--config-json", '{"bacth_size": 4}', "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="needs --motion-net"):
        main(["train", "--shards", *shards["train"], "--config-json", config, "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="unknown U-Net preset"):
        TrainConfig(model="huge")


def test_motion_net_cli_resume_matches(shards, tmp_path):
    """train-motion-net through the CLI: killed (exit code 3) and resumed equals uninterrupted."""
    from pipeline.cli import main

    config = json.dumps(MOTION_CFG | {"batch_size": 4, "max_steps": 3, "checkpoint_every": 1,
                                      "bn_recalibration_batches": 1})
    base = ["train-motion-net", "--shards", *shards["train"], "--config-json", config, "--pretrained", "none"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    assert main(base + ["--out", str(tmp_path / "b"), "--stop-after-steps", "2"]) == tu.STOPPED_EXIT_CODE
    assert main(base + ["--out", str(tmp_path / "b")]) == 0
    a, b = _state(tmp_path / "a" / "checkpoint.pt"), _state(tmp_path / "b" / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "a" / "metrics.json").exists()  # no test shards given


def test_epoch_batches_are_deterministic_and_full():
    a = tu.epoch_batches(10, 4, seed=1, epoch=0)
    assert a == tu.epoch_batches(10, 4, seed=1, epoch=0) and len(a) == 2 and all(len(b) == 4 for b in a)
    assert a != tu.epoch_batches(10, 4, seed=1, epoch=1)
    assert tu.step_decay_lr(2e-4, 25, 10, 0.5) == pytest.approx(5e-5)


def test_atomic_checkpoint_leaves_no_partial_on_failure(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    tu.save_checkpoint({"x": 1}, tmp_path / "c.pt")
    with pytest.raises(RuntimeError, match="boom"):
        tu.save_checkpoint({"x": Unpicklable()}, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=False) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
