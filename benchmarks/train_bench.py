"""Training throughput of the Im2Flow U-Net: images/s for forward + loss + backward + Adam step.

Synthetic tensors already on the device (data loading is measured by the shard
benchmark, not here). The step is the one `im2flow train` runs: U-Net, pixel
L2 + 0.02 · motion-content L2 through a frozen ResNet-18 (flow resized to the
content net's input size, 224 for the paper preset), magnitude-weighted
gradients, Adam. On CUDA each case runs with AMP (bfloat16 autocast,
channels-last) and without (float32, TF32 matmuls allowed, channels-last).

    python benchmarks/train_bench.py                      # the default cases for the device present
    python benchmarks/train_bench.py --preset paper --size 256 --batch 32 --amp both --steps 30
    python benchmarks/train_bench.py --markdown benchmarks/train_bench.md

Target (issue 4): >= 1500 images/s for the paper preset at 256², batch 32, AMP, on an H100-class GPU.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.losses import Im2FlowLoss, LossWeights  # noqa: E402
from models.motion_net import MotionContentNet, freeze  # noqa: E402
from models.unet import build_unet, count_parameters  # noqa: E402

log = logging.getLogger("train_bench")


@dataclass
class Case:
    preset: str
    size: int
    batch: int
    amp: bool
    content_input: int | None  # motion-content net input size; None: no content term


@dataclass
class Result:
    case: Case
    device: str
    images_per_s: float
    ms_per_step: float
    peak_mem_gib: float | None
    channels_last: bool
    compiled: bool


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_case(case: Case, device: torch.device, steps: int, warmup: int, channels_last: bool, compile_model: bool) -> Result:
    torch.manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = build_unet(case.preset).to(device=device, memory_format=memory_format).train()
    content = None
    if case.content_input is not None:
        content = freeze(MotionContentNet(num_classes=101, input_size=case.content_input)).to(
            device=device, memory_format=memory_format
        )
    weights = LossWeights() if content is not None else LossWeights(content_weight=0.0)
    criterion = Im2FlowLoss(content, weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))
    step_model = torch.compile(model) if compile_model else model
    frame = (torch.rand(case.batch, 3, case.size, case.size, device=device) * 2 - 1).contiguous(memory_format=memory_format)
    flow = torch.rand(case.batch, 3, case.size, case.size, device=device) * 2 - 1
    amp = case.amp and device.type == "cuda"

    def step() -> None:
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
            loss = criterion(step_model(frame), flow)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Result(case, device_name(device), steps * case.batch / elapsed, 1000 * elapsed / steps, peak,
                  channels_last, compile_model)


def default_cases(device: torch.device) -> list[Case]:
    if device.type == "cuda":
        return [Case("paper", 256, 32, True, 224), Case("paper", 256, 32, False, 224),
                Case("paper", 256, 32, True, None)]
    return [Case("small", 64, 32, False, None), Case("small", 64, 32, False, 64),
            Case("paper", 256, 2, False, None), Case("paper", 256, 2, False, 224)]


def table(results: list[Result]) -> str:
    lines = [
        "| device | preset | size | batch | precision | content loss | images/s | ms/step | peak GPU mem (GiB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        c = r.case
        precision = "AMP bf16" if c.amp and "CPU" not in r.device else ("fp32/TF32" if "CPU" not in r.device else "fp32")
        content = f"ResNet-18 layer2 @ {c.content_input}²" if c.content_input else "off"
        mem = f"{r.peak_mem_gib:.1f}" if r.peak_mem_gib is not None else "-"
        lines.append(f"| {r.device} | {c.preset} | {c.size} | {c.batch} | {precision}"
                     f"{' +compile' if r.compiled else ''} | {content} | {r.images_per_s:.1f} | {r.ms_per_step:.0f} | {mem} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--preset", help="one case: U-Net preset (paper, released, small, tiny)")
    p.add_argument("--size", type=int, help="one case: image size (default: the preset's)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--amp", choices=("on", "off", "both"), default="both", help="CUDA only")
    p.add_argument("--content-input", type=int, default=224,
                   help="motion-content net input size; 0 = no content term; -1 = the image size")
    p.add_argument("--steps", type=int, help="timed steps (default 30 on CUDA, 3 on CPU)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 10 on CUDA, 1 on CPU)")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the U-Net")
    p.add_argument("--threads", type=int, help="CPU threads")
    p.add_argument("--markdown", type=Path, help="also write the table (and the command) to this file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    steps = args.steps or (30 if device.type == "cuda" else 3)
    warmup = args.warmup if args.warmup is not None else (10 if device.type == "cuda" else 1)
    channels_last = device.type == "cuda" and not args.no_channels_last

    if args.preset:
        from models.unet import PRESETS

        size = args.size or PRESETS[args.preset].image_size
        content = {0: None, -1: size}.get(args.content_input, args.content_input)
        amps = {"on": [True], "off": [False], "both": [True, False]}[args.amp] if device.type == "cuda" else [False]
        cases = [Case(args.preset, size, args.batch, amp, content) for amp in amps]
    else:
        cases = default_cases(device)

    if device.type != "cuda":
        log.info("no CUDA device: CPU numbers only (the GPU target needs a CUDA machine)")
    for preset in sorted({c.preset for c in cases}):
        log.info("preset %s: %s parameters", preset, f"{count_parameters(build_unet(preset)):,}")
    results = []
    for case in cases:
        log.info("running %s", case)
        results.append(bench_case(case, device, steps, warmup, channels_last, args.compile))
        log.info("  %.1f images/s", results[-1].images_per_s)
    text = table(results)
    print(text)
    if args.markdown:
        command = "python " + " ".join(["benchmarks/train_bench.py", *(argv if argv is not None else sys.argv[1:])])
        args.markdown.write_text(
            f"# Im2Flow training throughput\n\nCommand: `{command}` (timed steps {steps}, warm-up {warmup}).\n\n"
            f"{text}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
