"""`im2flow <stage> ...`: one subcommand per pipeline stage.

Each stage module exposes ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their subcommand runs, so `im2flow --help`
stays fast and a CPU-only stage never imports torch.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import resource
import sys

from pipeline import lifetime

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate-config": ("pipeline.config", "validate a config file against the schema"),
    "demo-dataset": ("pipeline.data.demo", "render the procedural demo dataset (UCF-101 layout, true flow beside each video)"),
    "discover": ("pipeline.data.discovery", "list a dataset's videos, classes and splits as a manifest"),
    "shard": ("pipeline.data.shards", "flow targets of a shard's videos (batched, cached per video), then the HDF5 shard"),
    "videos": ("pipeline.data.videos", "gather the video lists: every video's status, the rejected, near-duplicates"),
    "train-motion-net": ("pipeline.train.motion_net", "train the motion-content ResNet-18 on flow images"),
    "train": ("pipeline.train.im2flow", "train the Im2Flow encoder-decoder"),
    "evaluate": ("pipeline.evaluate.evaluation", "flow-prediction metrics against baselines"),
    "predict": ("pipeline.predict", "hallucinate flow for still images"),
    "recognize": ("pipeline.recognize.experiment", "static-image action recognition with hallucinated motion (Table 2)"),
    "report": ("pipeline.report.build", "the HTML/Markdown report"),
    "run": ("pipeline.run", "the workflow (Snakemake) from anywhere, clearing a killed run's lock"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="im2flow", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            importlib.import_module(module).add_arguments(p)
    return parser


PEAK_MEMORY_ENV = "IM2FLOW_PEAK_MEMORY_FILE"


def peak_memory_kb() -> int:
    """This program's own peak resident memory (VmHWM of its address space, so not the memory of the
    process it was forked from, which ``ru_maxrss`` would include)."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):  # not Linux: the usage figure, which may count the parent too
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _write_peak_memory(path: str) -> None:
    with open(path, "w") as fh:
        fh.write(f"{peak_memory_kb()}\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if os.environ.get(PEAK_MEMORY_ENV):  # benchmarks: the stage's peak memory, written at exit
        atexit.register(_write_peak_memory, os.environ[PEAK_MEMORY_ENV])
    command = next((a for a in argv if a in COMMANDS), None)
    extra: list[str] = []
    if command == "run" and "--" in argv:  # `im2flow run ... -- <Snakemake options>`
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = build_parser(command).parse_args(argv)
    args.extra = extra
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command != "run":  # a stage: stop with Snakemake, clean up on SIGTERM
        lifetime.exit_on_sigterm()
        lifetime.watch_snakemake()
    return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
