"""What the GPU check scripts (benchmarks/gpu_check_*.py) share: CUDA-event timing and the run's metadata."""

from __future__ import annotations

import datetime
import statistics

import torch


def cuda_time_us(fn, *, warmup: int = 8, repeats: int = 40, calls: int = 1) -> float:
    """Median over `repeats` CUDA-event measurements of `calls` back-to-back fn() calls, per call, in µs.
    calls > 1 lets the GPU queue run ahead of the host, as a model's consecutive calls do."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1e3 / calls)
    return statistics.median(samples)


def run_info(**extra) -> dict:
    """The card, torch and CUDA versions and the time of a run, plus the script's own entries."""
    return dict(
        card=torch.cuda.get_device_name(),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
        **extra,
    )
