"""What the report says, section by section, read from the stages' outputs.

Each function turns one stage's files into a :class:`~pipeline.report.document.Section`;
:mod:`pipeline.report.build` puts them in order and renders them.
"""

from __future__ import annotations

import collections
import csv
import itertools
import datetime as _dt
import importlib.metadata as metadata
import json
import logging
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline.data.videos import read_records
from pipeline.evaluate.metrics import METRICS, REGION_TITLES, REGIONS
from pipeline.report.document import Callout, Code, Definitions, Figure, Figures, Heading, Paragraph, Section, Table

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
TABLE1_TITLE = "Flow prediction (Table 1)"
TABLE2_TITLE = "Static-image action recognition (Table 2)"


@dataclass
class ReportInputs:
    """The files the report is built from (the ``report`` rule's inputs and params)."""

    evaluation: Path  # folder written by `im2flow evaluate`
    im2flow_dir: Path  # Im2Flow training folder (metrics.csv, loss_curve.png)
    motion_net_dir: Path  # motion-net training folder (metrics.json, loss_curve.png)
    videos: Path  # videos.tsv: every video's status (rule video_lists)
    rejected: Path  # rejected_videos.tsv
    duplicates: Path  # near_duplicates.tsv
    benchmarks: Path  # Snakemake benchmark folder
    config: dict[str, Any]  # the validated config
    recognition_md: Path | None = None  # Table 2, or None with:
    recognition_status: str | None = None  # why there is no Table 2
    benchmark_files: list[str] | None = None  # the current jobs' benchmark files (None: every file found)

    def __post_init__(self) -> None:
        for name in ("evaluation", "im2flow_dir", "motion_net_dir", "videos", "rejected", "duplicates",
                     "benchmarks"):
            setattr(self, name, Path(getattr(self, name)))
        self.summary = json.loads((self.evaluation / "summary.json").read_text())
        self.records = read_records(self.videos)


def read_csv_rows(path: str | Path, delimiter: str = ",") -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


def fmt(value: Any, spec: str) -> str:
    """``value`` formatted, "–" when missing."""
    if value in (None, ""):
        return "–"
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


# ----------------------------------------------------------------------------- Table 1 and its figures


def table1(rows: list[dict[str, str]]) -> Table:
    """Table 1 from table.csv, each column's best value marked, our row highlighted."""
    columns = [f"{m}_{r}" for m in METRICS for r in REGIONS]
    values = [[None if row.get(c) in (None, "") else float(row[c]) for c in columns] for row in rows]
    best = []
    for j, c in enumerate(columns):
        col = [v[j] for v in values if v[j] is not None]
        best.append(None if not col else (min(col) if c.startswith("EPE") else max(col)))
    return Table(header=["Method"] + [f"{m} {REGION_TITLES[r]}" for m in METRICS for r in REGIONS],
                 rows=[[row["method"]] + [fmt(v, ".3f") for v in vals] for row, vals in zip(rows, values)],
                 best=[[False] + [v is not None and v == best[j] for j, v in enumerate(vals)] for vals in values],
                 highlight_rows=[row["method"] == "Im2Flow" for row in rows])


def flow_prediction(inputs: ReportInputs) -> Section:
    s, ev = inputs.summary, inputs.evaluation
    rows = read_csv_rows(ev / "table.csv")
    margins = s.get("margins_all_pixels", {})
    margin_text = "; ".join(f"{m}: EPE {fmt(d.get('EPE_all'), '+.3f')} px, DS {fmt(d.get('DS_all'), '+.3f')}"
                            for m, d in margins.items())
    beats = s.get("beats_every_baseline", False)
    verdict = ("Im2Flow beats every baseline on EPE and DS over all pixels." if beats
               else "Im2Flow does NOT beat every baseline on EPE and DS over all pixels.")
    per_column = ", ".join(f"{REGION_TITLES[k]} {rows[0].get('n_images_' + k, '?')}" for k in REGIONS) if rows else "–"
    methods = [[m, d, fmt(s.get("seconds", {}).get(m), ".1f")] for m, d in s.get("methods", {}).items()]
    return Section("table1", TABLE1_TITLE, [
        Paragraph(f"Every method predicts the flow of the same {s.get('n_test_images')} test frames; baselines are "
                  f"fitted on {s.get('n_train_images')} of {s.get('n_train_images_total', s.get('n_train_images'))} "
                  "training frames. EPE in pixels (lower is better); DS = cosine between true and predicted vectors, "
                  "OS = its absolute value (higher is better). Per image over all, Canny-edge and foreground pixels, "
                  "then averaged over images. Best value per column in bold."),
        table1(rows),
        Paragraph(f"Foreground mask: {s.get('foreground_mask', '?')}. Images per column: {per_column}. Im2Flow "
                  f"BatchNorm at test time: {s.get('bn_mode')} mode. {s.get('treatment', '')}", note=True),
        Callout(f"**{verdict}** Margins (positive = Im2Flow better): {margin_text}.", good=beats),
        Heading("Methods"), Table(["method", "what it is", "seconds"], methods, text_columns=(0, 1)),
    ])


def examples(inputs: ReportInputs) -> Section:
    return Section("examples", "Examples", [Figure(
        inputs.evaluation / "examples.png", "Input, each method's prediction and the ground truth, colour-wheel "
        "coded (hue = direction, saturation = speed, white = still); one scale per row, the row's largest magnitude.")])


def head_and_tail(path: Path, n: int) -> list[dict[str, str]]:
    """The first and last ``n`` rows of a CSV, read in one pass without holding the rest
    (motion_potential.csv has a row per test image: 200,000 at UCF-101 scale)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        head = list(itertools.islice(reader, n))
        tail = collections.deque(reader, maxlen=n)
    return head + list(tail)


def motion_potential(inputs: ReportInputs) -> Section:
    mp = inputs.summary.get("motion_potential", {})
    rows = head_and_tail(inputs.evaluation / "motion_potential.csv", 5)
    table = [[r["rank"], fmt(r["score"], ".2f"), r.get("label_name", ""), r.get("video_id", ""),
              r.get("frame_index", ""), fmt(r.get("true_score"), ".2f")] for r in rows]
    return Section("motion-potential", "Motion potential", [
        Paragraph("Score = Im2Flow's predicted magnitude summed over the foreground, divided by the foreground's area "
                  "(mean predicted motion per foreground pixel). Spearman rank correlation with the same score on the "
                  f"true flow: **{fmt(mp.get('spearman_vs_truth'), '.3f')}** over {mp.get('n_images')} test images "
                  f"({mp.get('n_without_foreground', 0)} without a foreground, scored over all pixels)."),
        Figure(inputs.evaluation / "motion_potential.png", "Highest and lowest scored test images with their "
               "predicted flow (one colour scale for the whole figure)."),
        Table(["rank", "score px", "class", "video", "frame", "true score px"], table, text_columns=(2, 3)),
    ])


# ----------------------------------------------------------------------------- Table 2, training


def parse_markdown_table(text: str) -> tuple[list[list[str]], list[str]]:
    """A Markdown text -> (table rows incl. header, the other non-empty paragraphs)."""
    rows: list[list[str]] = []
    paragraphs: list[str] = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if all(set(c) <= set("-: ") for c in cells):
                continue  # the alignment line
            rows.append(cells)
        elif s:
            paragraphs.append(s.lstrip("# "))
    return rows, paragraphs


def recognition(inputs: ReportInputs) -> Section:
    path = inputs.recognition_md
    if path is None or not Path(path).is_file():
        return Section("table2", TABLE2_TITLE, [Paragraph(f"**Not run.** {inputs.recognition_status or 'not run'}")])
    rows, notes = parse_markdown_table(Path(path).read_text(encoding="utf-8"))
    blocks: list = [Table(rows[0], rows[1:], text_columns=(0, 1)) if rows else Paragraph("(empty table)")]
    return Section("table2", TABLE2_TITLE, blocks + [Paragraph(n, note=True) for n in notes])


def _training_seconds(folder: Path) -> str:
    """Training time from the metrics history (which spans every resumed run), as text."""
    path = folder / "metrics.csv"
    rows = head_and_tail(path, 1) if path.is_file() else []
    return fmt(rows[-1].get("elapsed_s") if rows else None, ".0f")


def training(inputs: ReportInputs) -> Section:
    mn_file = inputs.motion_net_dir / "metrics.json"
    mn = json.loads(mn_file.read_text()) if mn_file.is_file() else {}
    curves = [Figure(p, c) for p, c in ((inputs.im2flow_dir / "loss_curve.png", "Im2Flow training loss"),
                                        (inputs.motion_net_dir / "loss_curve.png",
                                         "Motion-content network training loss")) if p.is_file()]
    return Section("training", "Training", [
        Paragraph(f"Motion-content network test accuracy: **{fmt(mn.get('test_accuracy'), '.3f')}** on "
                  f"{mn.get('test_samples', '?')} test flow images, trained in {_training_seconds(inputs.motion_net_dir)} "
                  f"s. Im2Flow: {inputs.summary.get('checkpoint_step')} steps in "
                  f"{_training_seconds(inputs.im2flow_dir)} s of training (every resumed run counted; the timing "
                  "table's benchmark shows the last job only)."),
        Figures(curves),
    ])


# ----------------------------------------------------------------------------- the data, provenance


def dataset_counts(inputs: ReportInputs) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """(usable videos per split, usable videos per class and split): rejected videos are not counted."""
    splits: dict[str, int] = {}
    classes: dict[str, dict[str, int]] = {}
    for r in inputs.records:
        per_class = classes.setdefault(r.class_name, {})
        if r.status == "rejected":
            continue
        splits[r.split] = splits.get(r.split, 0) + 1
        per_class[r.split] = per_class.get(r.split, 0) + 1
    return splits, classes


def data(inputs: ReportInputs) -> Section:
    """The usable data per class, what was left out, possible leakage, and the magnitude clip's fit."""
    splits, classes = dataset_counts(inputs)
    partial = sum(r.status == "partial" for r in inputs.records)
    rejected = sum(r.status == "rejected" for r in inputs.records)
    samples = {s: sum(r.samples for r in inputs.records if r.split == s) for s in ("train", "test")}
    empty = [c for c, n in sorted(classes.items()) if not sum(n.values())]
    blocks: list = [
        Paragraph(f"{sum(splits.values())} usable videos ({splits.get('train', 0)} train, {splits.get('test', 0)} "
                  f"test; {partial} of them partly: damaged samples dropped or cut short), {samples['train']:,} "
                  f"training and {samples['test']:,} test samples. {rejected} videos were rejected (listed below)."),
        Table(["class", "usable train videos", "usable test videos"],
              [[c, str(n.get("train", 0)), str(n.get("test", 0))] for c, n in sorted(classes.items())]),
    ]
    if empty:
        blocks.append(Callout(f"**Classes without a usable video:** {', '.join(empty)}.", good=False))
    blocks += _clip_fit(inputs) + _leakage(inputs)
    return Section("data", "Data", blocks)


def _clip_fit(inputs: ReportInputs) -> list:
    usable = [r for r in inputs.records if r.status != "rejected" and r.split == "train"]
    if not usable:
        return []
    clip = inputs.config.get("shards", {}).get("magnitude_clip", "?")
    weights = np.array([r.samples for r in usable], float)
    over = float(np.average([r.over_clip for r in usable], weights=weights)) if weights.sum() else 0.0
    p99 = float(np.percentile([r.p99_px for r in usable], 90))
    text = (f"Magnitude clip {clip} px (`shards.magnitude_clip`): {over:.1%} of the training targets' pixels exceed "
            f"it and reach the network as {clip} px; 90 % of the training videos have their 99th-percentile "
            f"magnitude below {p99:.1f} px.")
    return [Callout(text, good=over <= 0.01)]


def _leakage(inputs: ReportInputs) -> list:
    pairs = read_csv_rows(inputs.duplicates, "\t") if inputs.duplicates.is_file() else []
    if not pairs:
        return [Paragraph("No near-duplicate videos across the training and test splits (difference hashes of "
                          "frames spread over each video).", note=True)]
    return [Callout(f"**{len(pairs)} near-duplicate pair(s) across the splits**: a test video nearly identical to "
                    "a training video makes the nearest-neighbour baseline (and any memorising model) look better "
                    "than it is. Keep related clips in one split (`dataset.group_pattern` for folder datasets).",
                    good=False),
            Table(["training video", "test video", "frames matched"],
                  [[r["train_video"], r["test_video"], r["frames_matched"]] for r in pairs[:50]], text_columns=(0, 1))]


def rejected(inputs: ReportInputs) -> Section:
    rows = read_csv_rows(inputs.rejected, "\t")
    body = Table(["video", "path", "status", "reason"], [[r["video_id"], r["path"], r["status"], r["reason"]]
                                                         for r in rows],
                 text_columns=(0, 1, 2, 3)) if rows else Paragraph("None: every video was usable in full.")
    return Section("rejected", f"Rejected videos ({len(rows)})", [body])


def git_provenance(repo: Path = REPO) -> dict[str, str]:
    """Commit, and whether the working tree had uncommitted changes (read-only git calls)."""
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": "unknown (not a git checkout)", "dirty": "unknown"}
    return {"commit": commit, "dirty": "yes" if git("status", "--porcelain", "--untracked-files=no") else "no"}


def versions() -> str:
    out = [f"Python {platform.python_version()}"]
    for pkg in ("torch", "torchvision", "opencv-contrib-python-headless", "opencv-contrib-python", "numpy", "h5py",
                "snakemake"):
        try:
            out.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(out)


def benchmark_timings(bench_dir: str | Path, current: list[str] | None = None) -> list[dict[str, Any]]:
    """Per rule: jobs, total / max wall seconds, total CPU seconds, max RSS (MB), from
    Snakemake's benchmark TSVs (``benchmarks/<rule>.tsv`` or ``benchmarks/<rule>/**.tsv``).
    ``current``: the benchmark files of the workflow's current jobs (relative to ``bench_dir``);
    files left by jobs that no longer exist (a deleted video, fewer shards) are not counted."""
    bench_dir = Path(bench_dir)
    per_rule: dict[str, dict[str, Any]] = {}
    found = sorted(bench_dir.rglob("*.tsv")) if bench_dir.is_dir() else []
    if current is not None:
        wanted = set(current)
        found = [p for p in found if p.relative_to(bench_dir).as_posix() in wanted]
    for path in found:
        rel = path.relative_to(bench_dir)
        rule = rel.parts[0] if len(rel.parts) > 1 else path.stem
        try:
            rows = read_csv_rows(path, "\t")
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            log.warning("unreadable benchmark file %s: %s", path, exc)
            continue
        entry = per_rule.setdefault(rule, {"rule": rule, "jobs": 0, "total_s": 0.0, "max_s": 0.0, "cpu_s": 0.0,
                                           "max_rss_mb": 0.0})
        for row in rows[-1:]:  # a benchmark file holds one row per repeat; the last is the latest
            s = _number(row.get("s"))
            entry["jobs"] += 1
            entry["total_s"] += s
            entry["max_s"] = max(entry["max_s"], s)
            entry["cpu_s"] += _number(row.get("cpu_time"))
            entry["max_rss_mb"] = max(entry["max_rss_mb"], _number(row.get("max_rss")))
    return sorted(per_rule.values(), key=lambda r: -r["total_s"])


def _number(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return 0.0
    return v if v == v else 0.0  # NaN (Snakemake writes "NA" or "-") counts as 0


def provenance(inputs: ReportInputs, now: str) -> Section:
    config, s = inputs.config, inputs.summary
    estimator = config.get("flow", {}).get("estimator", "?")
    params = config.get("flow", {}).get("params", {}).get(estimator, {})
    dataset = config.get("dataset", {})
    git = git_provenance()
    timings = benchmark_timings(inputs.benchmarks, inputs.benchmark_files)
    timing_rows = [[t["rule"], str(t["jobs"]), f"{t['total_s']:.1f}", f"{t['max_s']:.1f}", f"{t['cpu_s']:.1f}",
                    f"{t['max_rss_mb']:.0f}"] for t in timings]
    return Section("provenance", "Provenance", [
        Definitions([
            ("git commit", f"`{git['commit']}` (uncommitted changes: {git['dirty']})"),
            ("flow estimator", f"`{estimator}` with `{json.dumps(params, sort_keys=True)}`"),
            ("Im2Flow checkpoint", f"`{s.get('checkpoint')}`, magnitude clip {s.get('magnitude_clip')} px"),
            ("dataset", f"`{dataset.get('root', '?')}` ({dataset.get('layout', '?')} layout, split "
                        f"{dataset.get('split', '?')})"),
            ("versions", versions()), ("generated", f"{now} on {platform.node() or '?'}")]),
        Heading(f"Timings per rule (Snakemake benchmarks; total {sum(t['total_s'] for t in timings):.0f} s of job "
                "wall time)"),
        Table(["rule", "jobs", "total wall s", "longest job s", "CPU s", "max RSS MB"], timing_rows) if timing_rows
        else Paragraph("No benchmark files found."),
        Heading("Config"), Code(yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100), "yaml"),
    ])


def lead(inputs: ReportInputs, now: str) -> str:
    splits, _ = dataset_counts(inputs)
    s = inputs.summary
    h, w = (s.get("frame_size") or ["?", "?"])[:2]
    estimator = inputs.config.get("flow", {}).get("estimator", "?")
    split_text = ", ".join(f"{v} {k}" for k, v in sorted(splits.items()))
    rejected = sum(r.status == "rejected" for r in inputs.records)
    return (f"{sum(splits.values())} usable videos ({split_text}; {rejected} rejected), flow by `{estimator}`, "
            f"{s.get('n_test_images')} test frames of {h}×{w} px. Generated {now}.")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
