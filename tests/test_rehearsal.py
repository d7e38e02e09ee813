"""The paper-scale rehearsal at a CI size: ten times the samples must not cost evaluation or
recognition more memory (benchmarks/scale_rehearsal.py; the README gives the full-size table)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_peak_memory_does_not_grow_with_the_samples(tmp_path):
    """60 and 600 training samples at 256², 4 classes: holding the larger split as float32 would add
    ~1.1 GB (600 + 238 test samples x 1.3 MB) to a stage, a ratio near 3; streaming stays near 1."""
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scale_rehearsal.py"), "--samples", "60", "600",
                           "--size", "256", "256", "--crop", "256", "--classes", "4", "--steps", "1", "--batch", "4",
                           "--nn-input", "32", "--rec-input", "32", "--mn-input", "32", "--backbone", "tiny",
                           "--per-shard", "200", "--threads", "2", "--json", str(out), "--keep", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {(r["stage"], r["size"]): r for r in json.loads(out.read_text())}
    for stage in ("evaluate (every baseline)", "recognize"):
        small, large = rows[(stage, 60)], rows[(stage, 600)]
        assert large["samples"] >= (9 if stage.startswith("evaluate") else 3) * small["samples"]
        ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
        assert ratio <= 1.25, f"{stage}: peak RSS {small['peak_rss_mb']:.0f} -> {large['peak_rss_mb']:.0f} MB"
    assert "Projection for UCF-101 split 1" in proc.stdout
