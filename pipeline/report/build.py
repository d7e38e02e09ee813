"""Stage 11: the report, one self-contained HTML page and its Markdown twin.

The page holds the flow-prediction table (Table 1) with Im2Flow's margins,
the example figure, motion potential, the recognition table (Table 2) or why
it is missing, training curves, the rejected-videos list, and the provenance
of every number: the config, the flow estimator and its parameters, the git
commit, library versions, and each rule's timings from Snakemake's benchmark
files. Images are embedded as base64 so that the HTML file can be mailed or
archived alone; the Markdown links the same PNGs by relative path.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as _dt
import html
import json
import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
TABLE1_TITLE = "Flow prediction (Table 1)"
TABLE2_TITLE = "Static-image action recognition (Table 2)"
CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; font-size: 16px;
       line-height: 1.5; color: #1d2330; background: #fff; max-width: 1100px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 30px; margin: 0 0 4px; }
h2 { font-size: 22px; margin: 40px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #d8dee9; }
h3 { font-size: 17px; margin: 22px 0 6px; }
p.lead { color: #4c566a; margin-top: 0; }
nav { background: #f4f6fa; border: 1px solid #e0e5ee; border-radius: 6px; padding: 8px 14px; font-size: 15px; }
nav a { margin-right: 16px; white-space: nowrap; }
a { color: #2b5fb3; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 15px; }
th, td { border: 1px solid #d8dee9; padding: 5px 10px; }
th { background: #eef2f8; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; background: #e6f4ea; }
tr.ours td { background: #fff8e1; }
tr.ours td.best { background: #d7f0dc; }
.note { color: #4c566a; font-size: 14px; }
.callout { border-left: 4px solid #2e7d32; background: #f1f8f2; padding: 8px 14px; margin: 10px 0; }
.callout.bad { border-left-color: #c62828; background: #fdf0f0; }
figure { margin: 12px 0 20px; }
figure img { max-width: 100%; border: 1px solid #e0e5ee; }
figcaption { color: #4c566a; font-size: 14px; margin-top: 4px; }
.curves { display: flex; flex-wrap: wrap; gap: 16px; }
.curves figure { flex: 1 1 420px; margin: 0; }
pre { background: #f6f8fa; border: 1px solid #e0e5ee; padding: 10px 12px; overflow-x: auto; font-size: 13px;
      line-height: 1.35; }
code { font-size: 14px; }
dl.kv { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dl.kv dt { font-weight: 600; } dl.kv dd { margin: 0; }
"""


# ----------------------------------------------------------------------------- reading inputs

def read_csv_rows(path: str | Path, delimiter: str = ",") -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


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
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": "yes" if status else "no"}


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
        entry = per_rule.setdefault(rule, {"rule": rule, "jobs": 0, "total_s": 0.0, "max_s": 0.0,
                                           "cpu_s": 0.0, "max_rss_mb": 0.0})
        for row in rows[-1:]:  # a benchmark file holds one row per repeat; the last is the latest
            s = _float(row.get("s"))
            entry["jobs"] += 1
            entry["total_s"] += s
            entry["max_s"] = max(entry["max_s"], s)
            entry["cpu_s"] += _float(row.get("cpu_time"))
            entry["max_rss_mb"] = max(entry["max_rss_mb"], _float(row.get("max_rss")))
    return sorted(per_rule.values(), key=lambda r: -r["total_s"])


def _float(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return 0.0
    return v if v == v else 0.0  # NaN (Snakemake writes "NA" or "-") counts as 0


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


# ----------------------------------------------------------------------------- HTML pieces

def e(text: Any) -> str:
    return html.escape(str(text))


def img_tag(path: str | Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{e(alt)}">'


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1,
               classes: Sequence[Sequence[str]] | None = None, row_classes: Sequence[str] | None = None,
               text_columns: Sequence[int] = (), escape: bool = True) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
    for r, row in enumerate(rows):
        rc = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        cells = []
        for c, value in enumerate(row):
            cls = ["num"] if c >= numeric_from and c not in text_columns and _is_number(value) else []
            if classes:
                cls += [x for x in classes[r][c].split() if x]
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{e(value) if escape else value}</td>")
        out.append(f"<tr{rc}>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _is_number(value: Any) -> bool:
    """Right-align numbers (and the "–" of a missing one), left-align words."""
    text = str(value).strip().rstrip("%")
    if text in ("–", "-", ""):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def inline_markdown(text: str) -> str:
    """Escape, then render the inline Markdown a stage's notes use: **bold** and `code`."""
    import re

    out = e(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def table1(rows: list[dict[str, str]]) -> tuple[str, str]:
    """Table 1 from table.csv: (HTML with each column's best value marked, Markdown)."""
    from pipeline.evaluate.metrics import METRICS, REGION_TITLES, REGIONS

    columns = [f"{m}_{r}" for m in METRICS for r in REGIONS]
    header = ["Method"] + [f"{m} {REGION_TITLES[r]}" for m in METRICS for r in REGIONS]
    values = [[_maybe(row.get(c)) for c in columns] for row in rows]
    best = []
    for j, c in enumerate(columns):
        col = [v[j] for v in values if v[j] is not None]
        best.append(None if not col else (min(col) if c.startswith("EPE") else max(col)))
    cells, classes, md_lines = [], [], ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(columns)]
    for row, vals in zip(rows, values):
        text = ["–" if v is None else f"{v:.3f}" for v in vals]
        cells.append([row["method"]] + text)
        classes.append([""] + ["best" if v is not None and v == best[j] else "" for j, v in enumerate(vals)])
        md_lines.append("| " + " | ".join([row["method"]] + [f"**{t}**" if k == "best" else t
                                                            for t, k in zip(text, classes[-1][1:])]) + " |")
    row_classes = ["ours" if r["method"] == "Im2Flow" else "" for r in rows]
    return html_table(header, cells, classes=classes, row_classes=row_classes), "\n".join(md_lines) + "\n"


def _maybe(value: str | None) -> float | None:
    if value in (None, ""):
        return None
    return float(value)


# ----------------------------------------------------------------------------- the report

def build_report(
    evaluation: str | Path,
    im2flow_dir: str | Path,
    motion_net_dir: str | Path,
    rejected: str | Path,
    manifest: str | Path,
    config: dict[str, Any],
    benchmarks: str | Path,
    out_html: str | Path,
    out_md: str | Path,
    recognition_md: str | Path | None = None,
    recognition_status: str | None = None,
) -> None:
    """Write the HTML page and the Markdown report (see the module docstring)."""
    import yaml

    from pipeline.atomic import write_text

    ev, im2flow_dir, mn_dir = Path(evaluation), Path(im2flow_dir), Path(motion_net_dir)
    out_html, out_md = Path(out_html), Path(out_md)
    summary = json.loads((ev / "summary.json").read_text())
    t1_rows = read_csv_rows(ev / "table.csv")
    t1_html, t1_md = table1(t1_rows)
    margins = summary.get("margins_all_pixels", {})
    beats = summary.get("beats_every_baseline", False)
    mn_metrics = json.loads((mn_dir / "metrics.json").read_text()) if (mn_dir / "metrics.json").is_file() else {}
    rejected_rows = read_csv_rows(rejected, "\t")
    manifest_rows = read_csv_rows(manifest, "\t")
    timings = benchmark_timings(benchmarks)
    git = git_provenance()
    flow_cfg = config.get("flow", {})
    estimator = flow_cfg.get("estimator", "?")
    estimator_params = flow_cfg.get("params", {}).get(estimator, {})
    name = config.get("name", "?")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = _versions()
    mp = summary.get("motion_potential", {})
    mp_rows = read_csv_rows(ev / "motion_potential.csv")

    # --- recognition (Table 2)
    if recognition_md is not None and Path(recognition_md).is_file():
        rec_rows, rec_notes = parse_markdown_table(Path(recognition_md).read_text(encoding="utf-8"))
        rec_html = (html_table(rec_rows[0], [[inline_markdown(c) for c in r] for r in rec_rows[1:]], escape=False) if rec_rows else "<p>(empty table)</p>") + "".join(
            f'<p class="note">{inline_markdown(p)}</p>' for p in rec_notes)
        rec_md = Path(recognition_md).read_text(encoding="utf-8").strip() + "\n"
    else:
        status = recognition_status or "not run"
        rec_html = f"<p><strong>Not run.</strong> {e(status)}</p>"
        rec_md = f"**Not run.** {status}\n"

    # --- split / class counts
    splits: dict[str, int] = {}
    classes: dict[str, dict[str, int]] = {}
    for r in manifest_rows:
        splits[r.get("split", "?")] = splits.get(r.get("split", "?"), 0) + 1
        cls = r.get("class_name") or r.get("label", "?")
        classes.setdefault(cls, {}).setdefault(r.get("split", "?"), 0)
        classes[cls][r.get("split", "?")] += 1

    margin_lines = [(m, d.get("EPE_all"), d.get("DS_all")) for m, d in margins.items()]
    margin_text = "; ".join(f"{m}: EPE {_fmt(epe, '+.3f')} px, DS {_fmt(ds, '+.3f')}" for m, epe, ds in margin_lines)
    verdict = ("Im2Flow beats every baseline on EPE and DS over all pixels." if beats
               else "Im2Flow does NOT beat every baseline on EPE and DS over all pixels.")
    n_test, n_train = summary.get("n_test_images"), summary.get("n_train_images")
    h, w = (summary.get("frame_size") or ["?", "?"])[:2]
    timing_rows = [[t["rule"], t["jobs"], f"{t['total_s']:.1f}", f"{t['max_s']:.1f}", f"{t['cpu_s']:.1f}",
                    f"{t['max_rss_mb']:.0f}"] for t in timings]
    timing_header = ["rule", "jobs", "total wall s", "longest job s", "CPU s", "max RSS MB"]
    total_wall = sum(t["total_s"] for t in timings)
    method_rows = [[m, d, f"{summary.get('seconds', {}).get(m, 0):.1f}"] for m, d in summary.get("methods", {}).items()]
    config_yaml = yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    top = mp_rows[:5]
    bottom = mp_rows[-5:]
    mp_header = ["rank", "score px", "class", "video", "frame", "true score px"]
    mp_table = [[r["rank"], _fmt(_maybe(r["score"]), ".2f"), r.get("label_name", ""), r.get("video_id", ""),
                 r.get("frame_index", ""), _fmt(_maybe(r.get("true_score")), ".2f")] for r in top + bottom]
    spearman = mp.get("spearman_vs_truth")
    rejected_table = [[r["video_id"], r["path"], r["reason"]] for r in rejected_rows]

    # ------------------------------------------------------------------ HTML
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Im2Flow report: {e(name)}</title><style>{CSS}</style></head><body>",
        f"<h1>Im2Flow report: <code>{e(name)}</code></h1>",
        f'<p class="lead">{e(len(manifest_rows))} videos ({", ".join(f"{e(v)} {e(k)}" for k, v in sorted(splits.items()))}), '
        f"flow by <code>{e(estimator)}</code>, {e(n_test)} test frames of {e(h)}×{e(w)} px. Generated {e(now)}.</p>",
        '<nav><a href="#table1">Flow prediction</a><a href="#examples">Examples</a>'
        '<a href="#motion-potential">Motion potential</a><a href="#table2">Recognition</a>'
        '<a href="#training">Training</a><a href="#rejected">Rejected videos</a><a href="#provenance">Provenance</a></nav>',
        f'<h2 id="table1">{TABLE1_TITLE}</h2>',
        f'<p>Every method predicts the flow of the same {e(n_test)} test frames; baselines are fitted on {e(n_train)} '
        "training frames. EPE in pixels (lower is better); DS = cosine between true and predicted vectors, "
        "OS = its absolute value (higher is better). Per image over all, Canny-edge and foreground pixels, then "
        "averaged over images. Best value per column in bold.</p>",
        t1_html,
        f'<p class="note">Foreground mask: {e(summary.get("foreground_mask", "?"))}. Images per column: '
        + ", ".join(f"{k} {e(t1_rows[0].get('n_images_' + k, '?'))}" for k in ("all", "canny", "fg")) + ". "
        f"Im2Flow BatchNorm at test time: {e(summary.get('bn_mode'))} mode.</p>",
        f'<div class="callout{"" if beats else " bad"}"><strong>{e(verdict)}</strong><br>'
        f"Margins (positive = Im2Flow better): {e(margin_text)}.</div>",
        "<h3>Methods</h3>", html_table(["method", "what it is", "seconds"], method_rows, numeric_from=2),
        '<h2 id="examples">Examples</h2>',
        f"<figure>{img_tag(ev / 'examples.png', 'example predictions')}<figcaption>Input, each method's prediction "
        "and the ground truth, colour-wheel coded (hue = direction, saturation = speed, white = still); "
        "one scale per row, the row's largest magnitude.</figcaption></figure>",
        '<h2 id="motion-potential">Motion potential</h2>',
        "<p>Score = Im2Flow's predicted magnitude summed over the foreground, divided by the foreground's area "
        f"(mean predicted motion per foreground pixel). Spearman rank correlation with the same score on the true "
        f"flow: <strong>{e(_fmt(spearman, '.3f'))}</strong> over {e(mp.get('n_images'))} test images "
        f"({e(mp.get('n_without_foreground', 0))} without a foreground, scored over all pixels).</p>",
        f"<figure>{img_tag(ev / 'motion_potential.png', 'motion potential')}<figcaption>Highest and lowest scored "
        "test images with their predicted flow (one colour scale for the whole figure).</figcaption></figure>",
        html_table(mp_header, mp_table, numeric_from=1, text_columns=(2, 3)),
        f'<h2 id="table2">{TABLE2_TITLE}</h2>', rec_html,
        '<h2 id="training">Training</h2>',
        f"<p>Motion-content network test accuracy: <strong>{e(_fmt(mn_metrics.get('test_accuracy'), '.3f'))}</strong> "
        f"on {e(mn_metrics.get('test_samples', '?'))} test flow images. Im2Flow: {e(summary.get('checkpoint_step'))} steps.</p>",
        '<div class="curves">',
    ]
    for path, caption in ((im2flow_dir / "loss_curve.png", "Im2Flow training loss"),
                          (mn_dir / "loss_curve.png", "Motion-content network training loss")):
        if path.is_file():
            parts.append(f"<figure>{img_tag(path, caption)}<figcaption>{e(caption)}</figcaption></figure>")
    parts += [
        "</div>",
        f'<h2 id="rejected">Rejected videos ({len(rejected_rows)})</h2>',
        html_table(["video", "path", "reason"], rejected_table, numeric_from=99) if rejected_rows
        else "<p>None: every video was usable.</p>",
        '<h2 id="provenance">Provenance</h2>', '<dl class="kv">',
        f"<dt>git commit</dt><dd><code>{e(git['commit'])}</code> (uncommitted changes: {e(git['dirty'])})</dd>",
        f"<dt>flow estimator</dt><dd><code>{e(estimator)}</code> with <code>{e(json.dumps(estimator_params, sort_keys=True))}</code></dd>",
        f"<dt>Im2Flow checkpoint</dt><dd><code>{e(summary.get('checkpoint'))}</code>, magnitude clip "
        f"{e(summary.get('magnitude_clip'))} px</dd>",
        f"<dt>dataset</dt><dd><code>{e(config.get('dataset', {}).get('root', '?'))}</code> "
        f"({e(config.get('dataset', {}).get('layout', '?'))} layout, split {e(config.get('dataset', {}).get('split', '?'))}); "
        + ", ".join(f"{e(c)} {'/'.join(str(n.get(s, 0)) for s in ('train', 'test'))}" for c, n in sorted(classes.items()))
        + " videos (train/test)</dd>",
        f"<dt>versions</dt><dd>{e(versions)}</dd>",
        f"<dt>generated</dt><dd>{e(now)} on {e(platform.node() or '?')}</dd>",
        "</dl>",
        f"<h3>Timings per rule (Snakemake benchmarks; total {total_wall:.0f} s of job wall time)</h3>",
        html_table(timing_header, timing_rows) if timing_rows else "<p>No benchmark files found.</p>",
        "<h3>Config</h3>", f"<pre>{e(config_yaml)}</pre>",
        "</body></html>",
    ]
    write_text(out_html, "\n".join(parts) + "\n")

    # ------------------------------------------------------------------ Markdown
    def rel(p: Path) -> str:
        return os.path.relpath(p, out_md.parent)

    md = [
        f"# Im2Flow report: `{name}`", "",
        f"{len(manifest_rows)} videos ({', '.join(f'{v} {k}' for k, v in sorted(splits.items()))}), flow by "
        f"`{estimator}`, {n_test} test frames of {h}×{w} px. Generated {now}.", "",
        f"## {TABLE1_TITLE}", "", t1_md,
        f"Foreground mask: {summary.get('foreground_mask')}. Im2Flow BatchNorm at test time: {summary.get('bn_mode')} mode. "
        "EPE in pixels (lower is better); DS and OS are cosines (higher is better). Best per column in bold.", "",
        f"**{verdict}** Margins (positive = Im2Flow better): {margin_text}.", "",
        "| method | what it is | seconds |", "|---|---|---:|",
        *[f"| {m} | {d} | {s} |" for m, d, s in method_rows], "",
        "## Examples", "", f"![examples]({rel(ev / 'examples.png')})", "",
        "## Motion potential", "",
        f"Spearman rank correlation with the true flow's score: {_fmt(spearman, '.3f')} over {mp.get('n_images')} test images.", "",
        f"![motion potential]({rel(ev / 'motion_potential.png')})", "",
        f"## {TABLE2_TITLE}", "", rec_md,
        "## Training", "",
        f"Motion-content network test accuracy: {_fmt(mn_metrics.get('test_accuracy'), '.3f')}. "
        f"Im2Flow: {summary.get('checkpoint_step')} steps.", "",
        f"![Im2Flow loss]({rel(im2flow_dir / 'loss_curve.png')}) ![motion net loss]({rel(mn_dir / 'loss_curve.png')})", "",
        f"## Rejected videos ({len(rejected_rows)})", "",
        *(["| video | path | reason |", "|---|---|---|", *[f"| {a} | {b} | {c} |" for a, b, c in rejected_table]]
          if rejected_rows else ["None: every video was usable."]), "",
        "## Provenance", "",
        f"- git commit: `{git['commit']}` (uncommitted changes: {git['dirty']})",
        f"- flow estimator: `{estimator}` with `{json.dumps(estimator_params, sort_keys=True)}`",
        f"- Im2Flow checkpoint: `{summary.get('checkpoint')}`, magnitude clip {summary.get('magnitude_clip')} px",
        f"- dataset: `{config.get('dataset', {}).get('root', '?')}`; videos (train/test) per class: "
        + ", ".join(f"{c} {'/'.join(str(n.get(s, 0)) for s in ('train', 'test'))}" for c, n in sorted(classes.items())),
        f"- versions: {versions}", "",
        f"### Timings per rule (total {total_wall:.0f} s of job wall time)", "",
        "| " + " | ".join(timing_header) + " |", "|---|" + "---:|" * (len(timing_header) - 1),
        *["| " + " | ".join(str(x) for x in row) + " |" for row in timing_rows], "",
        "### Config", "", "```yaml", config_yaml.rstrip(), "```", "",
    ]
    write_text(out_md, "\n".join(md))
    log.info("wrote %s and %s", out_html, out_md)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "–"
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def _versions() -> str:
    import importlib.metadata as md

    out = [f"Python {platform.python_version()}"]
    for pkg in ("torch", "torchvision", "opencv-contrib-python-headless", "opencv-contrib-python", "numpy", "h5py",
                "snakemake"):
        try:
            out.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            continue
    return ", ".join(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--evaluation", required=True, help="folder written by `im2flow evaluate`")
    p.add_argument("--im2flow", required=True, help="Im2Flow training folder (metrics.csv, loss_curve.png)")
    p.add_argument("--motion-net", required=True, help="motion-net training folder (metrics.json, loss_curve.png)")
    p.add_argument("--rejected", required=True, help="rejected_videos.tsv")
    p.add_argument("--manifest", required=True, help="manifest.tsv")
    p.add_argument("--config-json", required=True, help="the validated config: inline JSON or a .json/.yaml file")
    p.add_argument("--benchmarks", required=True, help="Snakemake benchmark folder")
    p.add_argument("--recognition", help="recognition table.md (Table 2)")
    p.add_argument("--recognition-status", help="why there is no recognition table")
    p.add_argument("--out-html", required=True)
    p.add_argument("--out-md", required=True)


def run(args: argparse.Namespace) -> int:
    from pipeline.train.loop import read_config_arg

    build_report(args.evaluation, args.im2flow, args.motion_net, args.rejected, args.manifest,
                 read_config_arg(args.config_json), args.benchmarks, args.out_html, args.out_md,
                 recognition_md=args.recognition, recognition_status=args.recognition_status)
    return 0
