"""Shared helpers for the benchmark scripts: timing, load average, a results table.

Timing method: every callable is warmed up, then the callables being compared are run in
turn (A, B, A, B, ...) so that a change of background load hits all of them alike, and the
median of the repeats is reported. Ratios are the median of the per-repeat ratios of
neighbouring samples (:func:`paired_ratio`), which cancels load that drifts between repeats
better than a ratio of medians does; both are printed.

The scripts leave OpenMP's wait policy as the environment has it, as a user's own script
would: on a quiet machine the default (spin, then sleep) is the fast one, about 1.3x faster than
``OMP_WAIT_POLICY=PASSIVE`` on the many small ops of K-Means. On a machine shared with other
jobs, spinning threads wait for descheduled ones; run with ``OMP_WAIT_POLICY=PASSIVE`` there.
The policy in force is printed under every table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Timing:
    """Seconds per call: the median, the fastest and every sample."""

    median: float
    minimum: float
    samples: list[float] = field(default_factory=list)


def time_interleaved(functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, Timing]:
    """Times several callables, alternating between them on every repeat; returns a Timing per name."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            samples[name].append(time.perf_counter() - start)
    return {name: Timing(statistics.median(s), min(s), s) for name, s in samples.items()}


def describe_samples(timings: dict[str, Timing]) -> str:
    """Every sample of every timing, in seconds, for a result's notes: ``name [0.12, 0.13], ...``."""
    return ", ".join(f"{name} {[round(x, 3) for x in timing.samples]}" for name, timing in timings.items())


def paired_ratio(value: Timing, reference: Timing) -> float:
    """Median over repeats of ``value.samples[i] / reference.samples[i]`` (samples taken side by side)."""
    return statistics.median(v / r for v, r in zip(value.samples, reference.samples))


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, and the core count, as one string."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min, {os.cpu_count()} cores)"


@dataclass
class Result:
    """One figure of a benchmark and how it compares with its reference and target.

    ``ratio`` (the figure judged against the target) is ``value / reference`` unless given, e.g.
    as a :func:`paired_ratio`; ``passed`` is ``None`` for figures reported for context only.
    """

    name: str
    value: float
    unit: str
    reference: float | None = None
    reference_name: str = ""
    target: str = ""
    passed: bool | None = None
    ratio: float | None = None

    def __post_init__(self) -> None:
        if self.ratio is None and self.reference:
            self.ratio = self.value / self.reference


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s" and value < 1:
        return f"{value * 1e3:.1f} ms"
    if unit == "GB":
        return f"{value:.3f} GB"
    return f"{value:.3g} {unit}".strip()


def print_results(title: str, results: list[Result], notes: list[str] = ()) -> None:
    """Prints a results table with PASS/MISS per target and the load average now."""
    header = ("figure", "value", "reference", "ratio", "med/med", "target", "status")
    rows = [header]
    for r in results:
        status = "info" if r.passed is None else ("PASS" if r.passed else "MISS")
        reference = f"{_number(r.reference, r.unit)} ({r.reference_name})" if r.reference_name else "-"
        ratio = "-" if r.ratio is None else f"{r.ratio:.3g}"
        plain = f"{r.value / r.reference:.3g}" if r.reference else "-"
        rows.append((r.name, _number(r.value, r.unit), reference, ratio, plain, r.target or "-", status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print(f"\n== {title} ==")
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))
    for note in notes:
        print(f"note: {note}")
    print(f"load average: {load_average()}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(default)')}")


def parse_args(description: str, repeats: int) -> argparse.Namespace:
    """``--quick`` (smoke run: small sizes, one repeat) and ``--repeats N``."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run: small sizes, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help=f"timed repeats (default {repeats}, quick 1)")
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 1 if args.quick else repeats
    return args


def vitb16_config(overrides: list[str] = ()):
    """The ``voc-vitb16`` preset with random CLIP weights (``clip.weights=None``) and extra overrides."""
    from splitmatch.config.presets import load_config

    return load_config(preset_name="voc-vitb16", overrides=["clip.weights=null", *overrides])
