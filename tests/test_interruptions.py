"""Interrupted runs: Snakemake killed during training, then the README's command and nothing else."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import BIN, run_snakemake, small_config

pytestmark = pytest.mark.slow

TRAIN = {"model": "tiny", "crop": 32, "batch_size": 4, "epochs": 50, "max_steps": 60, "num_workers": 0,
         "log_every": 1, "checkpoint_every": 5, "content_weight": 0.02}
MOTION = {"pretrained": None, "input_size": None, "crop": 32, "batch_size": 8, "epochs": 1, "max_steps": 3,
          "num_workers": 0, "log_every": 1, "checkpoint_every": 100, "bn_recalibration_batches": 1}


def _processes(command: str, folder: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if command in cmdline and Path(os.readlink(proc / "cwd")) == folder:
                found.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return found


def _rows(path: Path) -> list[tuple[str, str, str]]:
    with open(path, newline="") as fh:
        return [(r["step"], r["loss"], r["lr"]) for r in csv.DictReader(fh)]


def test_snakemake_killed_during_training_recovers_with_the_readme_command(tmp_path):
    config = small_config("data/ds", name="t", demo=True, **{"demo.classes": ["ArrowGlide", "BallFall", "WheelSpin"]})
    config.update(train=TRAIN, motion_net=MOTION, gpu_rules={"threads": 1})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    target = "results/t/models/tvl1/im2flow/checkpoint.pt"
    env = dict(os.environ, PATH="/usr/bin:/bin")  # no environment on PATH: `im2flow run` finds its own
    command = [str(BIN / "im2flow"), "run", "--cores", "2", target]
    with open(tmp_path / "run.log", "w") as output:
        run = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT)
    last = tmp_path / "results/t/models/tvl1/im2flow/last.pt"
    deadline = time.time() + 600
    while time.time() < deadline and not (last.is_file() and torch.load(last, weights_only=False)["step"] >= 10):
        assert run.poll() is None, f"`im2flow run` stopped early ({run.returncode}): see {tmp_path}/run.log"
        time.sleep(0.2)
    assert last.is_file(), "training never checkpointed"
    trainers = _processes("im2flow train ", tmp_path)
    assert trainers, "no training job running"
    run.send_signal(signal.SIGKILL)                      # Snakemake dies; its job must not live on
    run.wait()
    deadline = time.time() + 15
    while time.time() < deadline and _processes("im2flow train ", tmp_path):
        time.sleep(0.2)
    assert not _processes("im2flow train ", tmp_path), "the training job outlived Snakemake"
    assert (tmp_path / ".snakemake" / "locks").is_dir() and any((tmp_path / ".snakemake" / "locks").iterdir())
    # the README's command, unchanged: it clears the stale lock, reruns the incomplete job, resumes
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "removed the lock of an interrupted run" in done.stderr
    log = (tmp_path / "results/t/logs/train_im2flow.log").read_text()
    assert "resuming train im2flow" in log
    # the same weights and the same metrics history as a training that was never interrupted
    out = tmp_path / "whole"
    shards = sorted(str(p) for p in (tmp_path / "results/t/shards/tvl1").glob("train-*.h5"))
    subprocess.run([str(BIN / "im2flow"), "train", "--shards", *shards, "--motion-net",
                    str(tmp_path / "results/t/models/tvl1/motion_net/checkpoint.pt"), "--out", str(out),
                    "--config-json", json.dumps(TRAIN), "--threads", "1"],
                   check=True, capture_output=True, cwd=tmp_path)
    resumed = torch.load(tmp_path / target, weights_only=False)["model"]
    whole = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)
    rows = _rows(tmp_path / "results/t/models/tvl1/im2flow/metrics.csv")
    assert rows == _rows(out / "metrics.csv") and len(rows) == 60
    assert (tmp_path / "results/t/models/tvl1/im2flow/loss_curve.png").stat().st_size > 0
