"""Timing, memory, table and results-file helpers shared by every benchmark.

Timings are taken side by side: every contender runs once per round, in an order that alternates between rounds,
so that load from other processes on a shared machine hits all contenders alike. Ratios are the median over rounds
of the per-round ratio, which cancels slow drifts in machine load better than a ratio of medians.

Peak memory is the peak of live tensor bytes during one call: the bytes the contender holds before the call
(parameters, buffers, gradients, optimizer state, counted once per storage) plus the largest amount allocated on
top of that during the call. On CUDA the allocator's peak statistic gives the second term; on CPU, whose allocator
keeps no peak, torch.profiler's memory events do (their running "Total Allocated" counts every CPU tensor
allocation made while profiling). Both are deterministic, so memory ratios do not suffer from machine load.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class Row:
    """One line of the results table."""

    benchmark: str
    setting: str
    contender: str
    value: float | None  # seconds per call, or a rate, see `unit`
    unit: str
    ratio: float | None = None  # against `baseline`
    baseline: str = ""
    target: str = ""
    met: bool | None = None
    peak_mb: float | None = None
    memory_ratio: float | None = None
    memory_target: str = ""
    memory_met: bool | None = None
    note: str = ""


@dataclass
class Results:
    """All rows of a run plus facts about the run (size, device, dtype, wall time)."""

    rows: list[Row] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved_times(
    contenders: dict[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, list[float]]:
    """Seconds per call of each contender, one call per contender per round, alternating the order every round.

    `warmup` untimed calls of each contender come first: the first calls pay for lazy initialisation (oneDNN
    primitives, optimizer state, allocator growth) that a long run does not.
    """
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            synchronize(device)
            start = time.perf_counter()
            contenders[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of numerator[i] / denominator[i] (both measured in the same round)."""
    return median([a / b for a, b in zip(numerator, denominator)])


def unique_tensor_bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    """Bytes of the distinct storages behind `tensors` (tied or shared weights count once)."""
    seen: set[tuple[str, int]] = set()
    total = 0
    for tensor in tensors:
        if tensor is None or tensor.device.type == "meta":
            continue
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr())
        if key in seen:
            continue
        seen.add(key)
        total += storage.nbytes()
    return total


def held_tensors(*modules: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> list[torch.Tensor]:
    """Every tensor a training setup keeps between steps: parameters, their gradients, buffers, optimizer state."""
    tensors: list[torch.Tensor] = []
    for module in modules:
        for parameter in module.parameters():
            tensors.append(parameter)
            tensors.append(parameter.grad)
        tensors.extend(module.buffers())
    if optimizer is not None:
        for state in optimizer.state.values():
            tensors.extend(value for value in state.values() if isinstance(value, torch.Tensor))
    return tensors


def peak_call_bytes(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Largest number of tensor bytes allocated on top of what was live before `fn()`, during `fn()`."""
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return max(0, torch.cuda.max_memory_allocated() - before)
    return _cpu_peak_call_bytes(fn)


def _cpu_peak_call_bytes(fn: Callable[[], object]) -> int:
    from torch.profiler import ProfilerActivity, profile

    # The CPU allocator only tracks blocks allocated while memory profiling is on, so the running total in the
    # trace starts at zero and measures exactly what `fn` adds (frees of older blocks are not subtracted, which
    # can only overstate the peak).
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    handle, path = tempfile.mkstemp(suffix=".json")
    os.close(handle)
    try:
        prof.export_chrome_trace(path)
        with open(path) as file:
            events = json.load(file).get("traceEvents", [])
    finally:
        os.unlink(path)
    peak = 0
    for event in events:
        if event.get("name") == "[memory]":
            args = event.get("args", {})
            if args.get("Device Type", 0) == 0:
                peak = max(peak, int(args.get("Total Allocated", 0)))
    return peak


def format_table(results: Results) -> str:
    """A GitHub-flavoured Markdown table of the rows."""
    header = [
        "benchmark", "setting", "contender", "value", "ratio", "target", "met",
        "peak MB", "mem ratio", "mem target", "mem met",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results.rows:
        cells = [
            row.benchmark,
            row.setting,
            row.contender,
            _fmt_value(row.value, row.unit),
            "" if row.ratio is None else f"{row.ratio:.3f}x {row.baseline}".strip(),
            row.target,
            _fmt_met(row.met),
            "" if row.peak_mb is None else f"{row.peak_mb:.1f}",
            "" if row.memory_ratio is None else f"{row.memory_ratio:.3f}x",
            row.memory_target,
            _fmt_met(row.memory_met),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.3f} s"
    return f"{value:.2f} {unit}"


def _fmt_met(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "NO")


def mb(nbytes: float) -> float:
    return nbytes / 2**20


def write_json(path: str | None, value: object, **dump_options) -> None:
    """Writes a benchmark's results as JSON to the file its command line named (``--json``, ``--output``), if any."""
    if path:
        with open(path, "w") as file:
            json.dump(value, file, **dump_options)
