"""The report, one self-contained HTML page and its Markdown twin (rule ``report``, `im2flow report`).

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
import json
import logging
from pathlib import Path

from pipeline.atomic import write_text
from pipeline.config import read_config_arg
from pipeline.report import sections
from pipeline.report.document import Document, to_html, to_markdown
from pipeline.report.sections import ReportInputs

log = logging.getLogger(__name__)


def build_document(inputs: ReportInputs) -> Document:
    """Every section, in the order a reader wants them."""
    now = sections.utc_now()
    return Document(
        title=f"Im2Flow report: {inputs.config.get('name', '?')}",
        lead=sections.lead(inputs, now),
        sections=[sections.flow_prediction(inputs), sections.examples(inputs), sections.motion_potential(inputs),
                  sections.recognition(inputs), sections.training(inputs), sections.data(inputs),
                  sections.rejected(inputs), sections.provenance(inputs, now)],
    )


def build_report(inputs: ReportInputs, out_html: str | Path, out_md: str | Path) -> None:
    """Write the HTML page and the Markdown report (see the module docstring)."""
    doc = build_document(inputs)
    write_text(out_html, to_html(doc))
    write_text(out_md, to_markdown(doc, Path(out_md).parent))
    log.info("wrote %s and %s", out_html, out_md)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--evaluation", required=True, help="folder written by `im2flow evaluate`")
    p.add_argument("--im2flow", required=True, help="Im2Flow training folder (metrics.csv, loss_curve.png)")
    p.add_argument("--motion-net", required=True, help="motion-net training folder (metrics.json, loss_curve.png)")
    p.add_argument("--videos", required=True, help="videos.tsv (every video's status)")
    p.add_argument("--rejected", required=True, help="rejected_videos.tsv")
    p.add_argument("--duplicates", required=True, help="near_duplicates.tsv")
    p.add_argument("--config-json", required=True, help="the validated config: inline JSON or a .json/.yaml file")
    p.add_argument("--benchmarks", required=True, help="Snakemake benchmark folder")
    p.add_argument("--benchmark-files", help="JSON list: the current jobs' benchmark files, relative to --benchmarks")
    p.add_argument("--recognition", help="recognition table.md (Table 2)")
    p.add_argument("--recognition-status", help="why there is no recognition table")
    p.add_argument("--out-html", required=True)
    p.add_argument("--out-md", required=True)


def run(args: argparse.Namespace) -> int:
    inputs = ReportInputs(Path(args.evaluation), Path(args.im2flow), Path(args.motion_net), Path(args.videos),
                          Path(args.rejected), Path(args.duplicates), Path(args.benchmarks),
                          read_config_arg(args.config_json), Path(args.recognition) if args.recognition else None,
                          args.recognition_status, json.loads(args.benchmark_files) if args.benchmark_files else None)
    build_report(inputs, args.out_html, args.out_md)
    return 0
