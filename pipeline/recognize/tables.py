"""Table 2: the recognition results as rows (mean ± std over repeats), the verdict, and the files."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from pipeline.atomic import save_npz, write_text


# (key, group, configuration) in the order of the paper's Table 2; {src} is the Im2Flow training set.
TABLE_ROWS = [
    ("appearance", "One-Stream", "Appearance Stream"),
    ("motion", "One-Stream", "Motion Stream (Ours-{src})"),
    ("gt_motion", "One-Stream", "Motion Stream (Ground-truth Motion)"),
    ("appearance+appearance_2", "Two-Stream", "Appearance + Appearance"),
    ("appearance+motion", "Two-Stream", "Appearance + Motion (Ours-{src})"),
    ("appearance+gt_motion", "Two-Stream", "Appearance + Motion (Ground-truth Motion)"),
]


def table_rows(repeats: list[dict], im2flow_name: str) -> list[dict]:
    """Mean (and standard deviation over repeats) of each configuration's test accuracy and mAP, in %."""
    rows = []
    for key, group, label in TABLE_ROWS:
        found = [r["rows"][key] for r in repeats if key in r["rows"]]
        if not found:
            continue
        acc = np.array([f["accuracy"] for f in found]) * 100
        maps = np.array([f["mAP"] for f in found]) * 100
        weights = [f["weight"] for f in found if f["weight"] is not None]
        rows.append(dict(key=key, group=group, configuration=label.format(src=im2flow_name),
                         accuracy=float(acc.mean()), accuracy_std=float(acc.std()), mAP=float(maps.mean()),
                         mAP_std=float(maps.std()),
                         appearance_weight=float(np.mean(weights)) if weights else None, repeats=len(found)))
    return rows


def verdict(result: dict) -> str:
    """The closing note: does appearance + motion beat appearance + appearance?"""
    by_key = {r["key"]: r for r in result["rows"]}
    base = by_key.get("appearance+appearance_2")
    ours = by_key.get("appearance+motion")
    if base is None or ours is None:
        return "No hallucinated-motion stream (no Im2Flow checkpoint): nothing to compare."
    acc_d, map_d = ours["accuracy"] - base["accuracy"], ours["mAP"] - base["mAP"]
    if acc_d > 0 or (acc_d == 0 and map_d > 0):
        word = "beats"
    elif acc_d == 0 and map_d == 0:
        word = "ties with"
    else:
        word = "does not beat"
    n = result["repeats"][0]["n_test"]
    text = (f"Appearance + Motion (Ours-{result['im2flow_name']}) {word} Appearance + Appearance: accuracy "
            f"{ours['accuracy']:.1f} % vs {base['accuracy']:.1f} % ({acc_d:+.1f} points), mAP {ours['mAP']:.1f} % "
            f"vs {base['mAP']:.1f} % ({map_d:+.1f} points), on {n} test images")
    if len(result["repeats"]) > 1:
        text += (f", mean of {len(result['repeats'])} repeats (std accuracy {ours['accuracy_std']:.1f} / "
                 f"{base['accuracy_std']:.1f} points)")
    return text + "."


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.1f}" + (f" ± {std:.1f}" if std else "")


def table_csv(result: dict) -> str:
    """table.csv: one line per configuration, with the dataset and Im2Flow source named."""
    fields = ["group", "configuration", "accuracy", "accuracy_std", "mAP", "mAP_std", "appearance_weight",
              "repeats", "static_dataset", "im2flow_source", "n_test"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in result["rows"]:
        writer.writerow({**{k: row[k] for k in fields if k in row}, "static_dataset": result["static_name"],
                         "im2flow_source": result["im2flow_name"], "n_test": result["n_test"],
                         "accuracy": f"{row['accuracy']:.2f}", "accuracy_std": f"{row['accuracy_std']:.2f}",
                         "mAP": f"{row['mAP']:.2f}", "mAP_std": f"{row['mAP_std']:.2f}",
                         "appearance_weight": "" if row["appearance_weight"] is None
                         else f"{row['appearance_weight']:.2f}"})
    return buf.getvalue()


def table_markdown(result: dict) -> str:
    """table.md: what was run on what (the validation split as it really was), the table, the verdict."""
    cfg = result["config"]
    n_val = sorted({r["n_val"] for r in result["repeats"]})
    source = (f"hallucinated motion from Im2Flow trained on **{result['im2flow_name']}**"
              if result["magnitude_clip"] is not None else "no Im2Flow checkpoint (no hallucinated motion)")
    lines = [f"Static-image action recognition on **{result['static_name']}** ({result['n_train']} train / "
             f"{result['n_test']} test images, {len(result['class_names'])} classes); {source}. Backbone "
             f"{cfg['backbone']} per stream; fusion weight on appearance chosen on a validation split of "
             f"{'/'.join(map(str, n_val))} training images ({cfg['validation_fraction']:.0%} of each class, held "
             f"out of the streams' training); {len(result['repeats'])} repeat(s).", "",
             "| | Configuration | Accuracy (%) | mAP (%) | Appearance weight |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        weight = _fmt(row["appearance_weight"]) if row["appearance_weight"] is not None else ""
        lines.append(f"| {row['group']} | {row['configuration']} | {_fmt(row['accuracy'], row['accuracy_std'])} | "
                     f"{_fmt(row['mAP'], row['mAP_std'])} | {weight} |")
    return "\n".join(lines + ["", verdict(result), ""])


def write_tables(result: dict, out_dir: str | os.PathLike) -> None:
    """table.csv, table.md, metrics.json and scores.npz in ``out_dir``."""
    out_dir = Path(out_dir)
    write_text(out_dir / "table.csv", table_csv(result))
    write_text(out_dir / "table.md", table_markdown(result))
    meta = {k: v for k, v in result.items() if k != "scores"}
    meta["verdict"] = verdict(result)
    write_text(out_dir / "metrics.json", json.dumps(meta, indent=2, default=float) + "\n")
    save_npz(out_dir / "scores.npz", **result["scores"])


def write_refusal(reason: str, out_dir: str | os.PathLike, **counts: int) -> None:
    """The rule's outputs when the static sets cannot give a meaningful Table 2: no numbers, the reason
    (the report shows it where Table 2 would be)."""
    out_dir = Path(out_dir)
    write_text(out_dir / "table.csv", table_csv({"rows": []}))
    write_text(out_dir / "table.md", f"**Not run.** Recognition refused: {reason}.\n")
    write_text(out_dir / "metrics.json", json.dumps({"refused": reason, **counts}, indent=2) + "\n")
    save_npz(out_dir / "scores.npz")
