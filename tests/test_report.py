"""Stage 11: the report from hand-made stage outputs, and (slow) the whole demo DAG ending in it."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import planned_jobs, run_snakemake, small_config
from pipeline.evaluate.metrics import write_rows_csv
from pipeline.data.videos import VideoRecord, write_records, write_rejected
from pipeline.report.build import build_report
from pipeline.report.sections import ReportInputs, benchmark_timings, parse_markdown_table

METHODS = ["Zero flow", "Mean training flow", "Nearest neighbour", "Codebook (Walker-style)", "Im2Flow"]


def _png(path: Path, value: int = 200) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((20, 30, 3), value, np.uint8))
    return path


def fake_stage_outputs(root: Path) -> dict[str, Path]:
    ev = root / "evaluation"
    rows = []
    for k, method in enumerate(METHODS):
        row = {"method": method}
        for m, base in (("EPE", 3.0 - 0.4 * k), ("DS", 0.1 * k), ("OS", 0.6 + 0.05 * k)):
            for r in ("all", "canny", "fg"):
                row[f"{m}_{r}"] = base
        row.update(n_images_all=10, n_images_canny=9, n_images_fg=10, fg_mask="opencv-saliency-x")
        rows.append(row)
    write_rows_csv(rows, ev / "table.csv")
    (ev / "table.md").write_text("| Method |\n|---|\n")
    for name in ("examples.png", "motion_potential.png"):
        _png(ev / name)
    write_rows_csv([{"image": 3, "video_id": "A/v1", "frame_index": 4, "label_name": "A", "score": 2.5,
                     "true_score": 2.0, "rank": 1},
                    {"image": 1, "video_id": "B/v2", "frame_index": 0, "label_name": "B", "score": 0.5,
                     "true_score": 0.7, "rank": 2}], ev / "motion_potential.csv")
    margins = {m: {"EPE_all": 1.6 - 0.4 * k, "DS_all": 0.4 - 0.1 * k} for k, m in enumerate(METHODS[:-1])}
    (ev / "summary.json").write_text(json.dumps({
        "n_test_images": 10, "n_train_images": 30, "frame_size": [64, 64], "foreground_mask": "opencv-saliency-x",
        "bn_mode": "eval", "margins_all_pixels": margins, "beats_every_baseline": True,
        "methods": {m: f"about {m}" for m in METHODS}, "seconds": {m: 1.0 for m in METHODS},
        "motion_potential": {"n_images": 2, "spearman_vs_truth": 0.8, "n_without_foreground": 0},
        "checkpoint": "results/x/checkpoint.pt", "checkpoint_step": 330, "magnitude_clip": 8.0}))
    im2flow, mn = root / "im2flow", root / "motion_net"
    _png(im2flow / "loss_curve.png", 100)
    _png(mn / "loss_curve.png", 50)
    (mn / "metrics.json").write_text(json.dumps({"test_accuracy": 0.75, "test_samples": 10}))
    records = [  # two usable videos, one partly; class X's only video was rejected
        VideoRecord("A/v1", "A/v1.avi", 0, "A", "test", "ok", 4, "", 2.0, 0.0, "00ff00ff00ff00ff"),
        VideoRecord("B/v2", "B/v2.avi", 1, "B", "train", "partial", 3, "dropped the samples at frames 12", 9.0,
                    0.02, "ff00ff00ff00ff00"),
        VideoRecord("X/v_<bad>&", "X/v_<bad>&.avi", 2, "X", "train", "rejected", 0, "not a video (0 frames decoded)",
                    0.0, 0.0, ""),
    ]
    videos, rejected, duplicates = root / "videos.tsv", root / "rejected_videos.tsv", root / "near_duplicates.tsv"
    write_records(records, videos)
    write_rejected(records, rejected)
    duplicates.write_text("train_video\ttest_video\tframes_matched\nB/v2\tA/v1\t3\n")
    bench = root / "benchmarks"
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (bench / "flow" / "tvl1").mkdir(parents=True)
    (bench / "flow" / "tvl1" / "a.tsv").write_text(header + "2.0\t0:00:02\t100\t1\t1\t1\t0\t0\t50\t1.5\n")
    (bench / "flow" / "tvl1" / "b.tsv").write_text(header + "3.0\t0:00:03\t120\t1\t1\t1\t0\t0\t50\t2.5\n")
    (bench / "train_im2flow.tsv").write_text(header + "60.0\t0:01:00\t900\t1\t1\t1\t0\t0\t90\t110\n")
    return {"evaluation": ev, "im2flow_dir": im2flow, "motion_net_dir": mn, "videos": videos, "rejected": rejected,
            "duplicates": duplicates, "benchmarks": bench}


def _inputs(paths, **extra) -> ReportInputs:
    return ReportInputs(**paths, config=CONFIG, **extra)


CONFIG = {"name": "demo", "flow": {"estimator": "tvl1", "params": {"tvl1": {"threads": 1, "warps": 3}}},
          "evaluate": {"bn_mode": "eval"}}


def test_report_holds_every_table_and_is_self_contained(tmp_path):
    paths = fake_stage_outputs(tmp_path)
    rec = tmp_path / "recognition.md"
    rec.write_text("| Stream | Accuracy |\n|---|---:|\n| Appearance | 0.500 |\n| Appearance + motion | 0.600 |\n\n"
                   "Fusion weight chosen on validation.\n")
    out_html, out_md = tmp_path / "report" / "report.html", tmp_path / "report" / "report.md"
    build_report(_inputs(paths, recognition_md=rec), out_html, out_md)
    page = out_html.read_text()
    for method in METHODS:
        assert f"<td>{method}</td>" in page
    assert "Flow prediction (Table 1)" in page and "Static-image action recognition (Table 2)" in page
    assert "<td>Appearance + motion</td>" in page and "Fusion weight chosen" in page
    assert "beats every baseline" in page and "+1.600" in page
    assert "X/v_&lt;bad&gt;&amp;" in page and "<bad>" not in page  # rejected list, escaped
    assert "flow" in page and "train_im2flow" in page and "<td class=\"num\">2</td>" in page  # two flow jobs
    assert '"warps": 3' in page.replace("&quot;", '"')  # estimator parameters
    assert re.search(r"git commit</dt><dd><code>([0-9a-f]{40}|unknown)", page)
    # self-contained: every image is inline, and decodes
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert base64.b64decode(sources[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    md = out_md.read_text()
    assert "| Im2Flow |" in md and "| Appearance + motion |" in md and "../evaluation/examples.png" in md
    assert "**0.400**" in md  # Im2Flow's DS, the column's best, in bold


def test_report_says_when_recognition_was_not_run(tmp_path):
    paths = fake_stage_outputs(tmp_path)
    out_html, out_md = tmp_path / "r.html", tmp_path / "r.md"
    build_report(_inputs(paths, recognition_status="recognize.enabled is false in the config."), out_html, out_md)
    assert "Not run." in out_html.read_text() and "recognize.enabled is false" in out_md.read_text()


def test_benchmark_timings_group_by_rule(tmp_path):
    paths = fake_stage_outputs(tmp_path)
    timings = {t["rule"]: t for t in benchmark_timings(paths["benchmarks"])}
    assert timings["flow"]["jobs"] == 2 and timings["flow"]["total_s"] == pytest.approx(5.0)
    assert timings["flow"]["max_rss_mb"] == pytest.approx(120) and timings["train_im2flow"]["cpu_s"] == 110
    assert benchmark_timings(tmp_path / "nowhere") == []


def test_report_counts_usable_videos_and_current_jobs_only(tmp_path):
    """A rejected video counts nowhere but in its own section; a class left without a usable video is
    flagged; a benchmark file no current job wrote (a deleted video's) is not timed; near-duplicates show."""
    paths = fake_stage_outputs(tmp_path)
    header = (paths["benchmarks"] / "train_im2flow.tsv").read_text().splitlines()[0]
    current = ["flow/tvl1/a.tsv", "train_im2flow.tsv"]          # b.tsv is a leftover
    build_report(_inputs(paths, recognition_status="off", benchmark_files=current), tmp_path / "r.html",
                 tmp_path / "r.md")
    md = (tmp_path / "r.md").read_text()
    assert "2 usable videos (1 test, 1 train; 1 rejected)" in md
    assert "2 usable videos (1 train, 1 test; 1 of them partly" in md
    assert "| X | 0 | 0 |" in md and "Classes without a usable video:** X" in md
    assert "| flow | 1 | 2.0 |" in md and "total 62 s" in md and header
    assert "near-duplicate pair(s) across the splits" in md and "| B/v2 | A/v1 | 3 |" in md
    assert "Rejected videos (2)" in md and "| partly rejected |" in md


def test_parse_markdown_table():
    rows, notes = parse_markdown_table("| a | b |\n|---|:---:|\n| 1 | 2 |\n\nA note.\n")
    assert rows == [["a", "b"], ["1", "2"]] and notes == ["A note."]


# ----------------------------------------------------------------------------- the whole DAG

TINY_TRAIN = {"model": "tiny", "crop": 32, "batch_size": 8, "epochs": 1, "max_steps": 4, "num_workers": 0,
              "log_every": 2, "checkpoint_every": 100, "content_weight": 0.02}
TINY_MOTION = {"pretrained": None, "input_size": None, "crop": 32, "batch_size": 8, "epochs": 1, "max_steps": 4,
               "num_workers": 0, "log_every": 2, "checkpoint_every": 100, "bn_recalibration_batches": 2}
TINY_EVALUATE = {"baseline_params": {"nearest_neighbour": {"features": "resnet18", "weights": None},
                                     "codebook": {"epochs": 2, "n_codewords": 8, "grid": 4, "input_size": 32}},
                 "figure_rows": 3, "motion_potential_rows": 2}


def _workflow_has_recognition() -> bool:
    from conftest import REPO

    return "rule recognize" in (REPO / "workflow" / "rules" / "recognize.smk").read_text()


@pytest.mark.slow
def test_demo_dag_ends_in_the_report(tmp_path):
    """README's command on a tiny config: demo renders -> ... -> evaluation -> report, every table in it."""
    recognition = _workflow_has_recognition()
    config = small_config("data/ds", name="t", demo=True)
    config.update(train=TINY_TRAIN, motion_net=TINY_MOTION, evaluate=TINY_EVALUATE)
    config["gpu_rules"] = {"threads": 1}
    config["recognize"] = {"enabled": recognition}
    run_snakemake(tmp_path, config)
    results = tmp_path / "results" / "t"
    report = results / "report" / "report.html"
    assert report.is_file() and (results / "report" / "report.md").is_file()
    page = report.read_text()
    rows = list(csv.DictReader(open(results / "evaluation" / "tvl1" / "table.csv")))
    assert [r["method"] for r in rows] == METHODS
    for r in rows:  # Table 1, every method, with the numbers of table.csv
        assert f"<td>{r['method']}</td>" in page
        assert f"{float(r['EPE_all']):.3f}" in page
    assert "Flow prediction (Table 1)" in page and "Static-image action recognition (Table 2)" in page
    if recognition:
        rec_rows, _ = parse_markdown_table((results / "recognition" / "tvl1" / "table.md").read_text())
        assert all(f"<td>{row[0]}</td>" in page for row in rec_rows[1:])
    else:
        assert "Not run." in page
    assert "Rejected videos (0)" in page and "Timings per rule" in page
    for rule in ("shards", "train_im2flow", "evaluate"):
        assert f"<td>{rule}</td>" in page, rule
    assert page.count("data:image/png;base64,") >= 4
    # the report is the DAG's final target: nothing left to do (after the demo checkpoint,
    # Snakemake still lists the output-less target rule `all`, which runs no command)
    dry = run_snakemake(tmp_path, config, "-n")
    assert set(planned_jobs(dry)) <= {"all"}, dry.stdout[-3000:]


def test_a_refused_recognition_is_explained_in_the_report(tmp_path):
    """The recognize job wrote its refusal as table.md: the report's Table 2 section is that reason."""
    paths = fake_stage_outputs(tmp_path)
    rec = tmp_path / "table.md"
    rec.write_text("**Not run.** Recognition refused: test class(es) with no training image: Jump.\n")
    build_report(_inputs(paths, recognition_md=rec), tmp_path / "r.html", tmp_path / "r.md")
    md = (tmp_path / "r.md").read_text()
    section = md.split("Static-image action recognition (Table 2)")[1]
    assert "Recognition refused: test class(es) with no training image: Jump" in section
    assert "validation" not in section.split("##")[0]
