"""What the report says, section by section, read from the stages' outputs.

Each function turns one stage's files into a :class:`~pipeline.report.document.Section`;
:mod:`pipeline.report.build` puts them in order and renders them.
"""

from __future__ import annotations

import csv
import datetime as _dt
import importlib.metadata as metadata
import json
import logging
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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
    rejected: Path  # rejected_videos.tsv
    manifest: Path  # manifest.tsv
    benchmarks: Path  # Snakemake benchmark folder
    config: dict[str, Any]  # the validated config
    recognition_md: Path | None = None  # Table 2, or None with:
    recognition_status: str | None = None  # why there is no Table 2

    def __post_init__(self) -> None:
        for name in ("evaluation", "im2flow_dir", "motion_net_dir", "rejected", "manifest", "benchmarks"):
            setattr(self, name, Path(getattr(self, name)))
        self.summary = json.loads((self.evaluation / "summary.json").read_text())


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


def motion_potential(inputs: ReportInputs) -> Section:
    mp = inputs.summary.get("motion_potential", {})
    rows = read_csv_rows(inputs.evaluation / "motion_potential.csv")
    table = [[r["rank"], fmt(r["score"], ".2f"), r.get("label_name", ""), r.get("video_id", ""),
              r.get("frame_index", ""), fmt(r.get("true_score"), ".2f")] for r in rows[:5] + rows[-5:]]
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


def training(inputs: ReportInputs) -> Section:
    mn_file = inputs.motion_net_dir / "metrics.json"
    mn = json.loads(mn_file.read_text()) if mn_file.is_file() else {}
    curves = [Figure(p, c) for p, c in ((inputs.im2flow_dir / "loss_curve.png", "Im2Flow training loss"),
                                        (inputs.motion_net_dir / "loss_curve.png",
                                         "Motion-content network training loss")) if p.is_file()]
    return Section("training", "Training", [
        Paragraph(f"Motion-content network test accuracy: **{fmt(mn.get('test_accuracy'), '.3f')}** on "
                  f"{mn.get('test_samples', '?')} test flow images. Im2Flow: {inputs.summary.get('checkpoint_step')} "
                  "steps."),
        Figures(curves),
    ])


# ----------------------------------------------------------------------------- the data, provenance


def dataset_counts(inputs: ReportInputs) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """(videos per split, videos per class and split) from the manifest."""
    splits: dict[str, int] = {}
    classes: dict[str, dict[str, int]] = {}
    for r in read_csv_rows(inputs.manifest, "\t"):
        split = r.get("split", "?")
        splits[split] = splits.get(split, 0) + 1
        per_class = classes.setdefault(r.get("class_name") or r.get("label", "?"), {})
        per_class[split] = per_class.get(split, 0) + 1
    return splits, classes


def rejected(inputs: ReportInputs) -> Section:
    rows = read_csv_rows(inputs.rejected, "\t")
    body = Table(["video", "path", "reason"], [[r["video_id"], r["path"], r["reason"]] for r in rows],
                 text_columns=(0, 1, 2)) if rows else Paragraph("None: every video was usable.")
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


def benchmark_timings(bench_dir: str | Path) -> list[dict[str, Any]]:
    """Per rule: jobs, total / max wall seconds, total CPU seconds, max RSS (MB), from
    Snakemake's benchmark TSVs (``benchmarks/<rule>.tsv`` or ``benchmarks/<rule>/**.tsv``)."""
    bench_dir = Path(bench_dir)
    per_rule: dict[str, dict[str, Any]] = {}
    for path in sorted(bench_dir.rglob("*.tsv")) if bench_dir.is_dir() else []:
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
    _, classes = dataset_counts(inputs)
    git = git_provenance()
    timings = benchmark_timings(inputs.benchmarks)
    timing_rows = [[t["rule"], str(t["jobs"]), f"{t['total_s']:.1f}", f"{t['max_s']:.1f}", f"{t['cpu_s']:.1f}",
                    f"{t['max_rss_mb']:.0f}"] for t in timings]
    per_class = ", ".join(f"{c} {'/'.join(str(n.get(x, 0)) for x in ('train', 'test'))}" for c, n in sorted(classes.items()))
    return Section("provenance", "Provenance", [
        Definitions([
            ("git commit", f"`{git['commit']}` (uncommitted changes: {git['dirty']})"),
            ("flow estimator", f"`{estimator}` with `{json.dumps(params, sort_keys=True)}`"),
            ("Im2Flow checkpoint", f"`{s.get('checkpoint')}`, magnitude clip {s.get('magnitude_clip')} px"),
            ("dataset", f"`{dataset.get('root', '?')}` ({dataset.get('layout', '?')} layout, split "
                        f"{dataset.get('split', '?')}); {per_class} videos (train/test)"),
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
    return (f"{sum(splits.values())} videos ({split_text}), flow by `{estimator}`, {s.get('n_test_images')} test "
            f"frames of {h}×{w} px. Generated {now}.")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
