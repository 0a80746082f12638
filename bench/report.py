"""Figures, the table they are printed as, and the JSON file they are written to."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    """One measured quantity: a rate per repeat (higher is better) or a single rate."""

    samples: list[float]
    unit: str = "obs/s"
    # Latencies and costs: smaller is better; "best" is then the smallest sample.
    higher_is_better: bool = True

    @property
    def best(self) -> float:
        if not self.samples:
            return 0.0
        return max(self.samples) if self.higher_is_better else min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "best": self.best,
            "median": self.median,
            "samples": self.samples,
        }


@dataclass
class Row:
    """A case measured for the candidate and for its baseline in the same run."""

    case: str
    candidate: Figure
    baseline: Figure
    aim: float | None = None  # the candidate's target, in the figure's unit
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """How many times better the candidate is: candidate median over baseline median,
        or baseline over candidate for a figure where smaller is better (a latency)."""
        if self.candidate.higher_is_better:
            top, bottom = self.candidate.median, self.baseline.median
        else:
            top, bottom = self.baseline.median, self.candidate.median
        return top / bottom if bottom else float("inf")

    @property
    def meets_aim(self) -> bool | None:
        if self.aim is None:
            return None
        if self.candidate.higher_is_better:
            return self.candidate.median >= self.aim
        return self.candidate.median <= self.aim

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "candidate": self.candidate.to_json(),
            "baseline": self.baseline.to_json(),
            "ratio_median": self.ratio,
            "aim": self.aim,
            "meets_aim": self.meets_aim,
            "notes": self.notes,
            "details": self.details,
        }


@dataclass
class BenchResult:
    name: str
    description: str
    candidate: str  # what is measured
    baseline: str  # what it is compared with
    params: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # cost models, profiles, ...
    elapsed_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "params": self.params,
            "rows": [row.to_json() for row in self.rows],
            "extra": self.extra,
            "elapsed_seconds": self.elapsed_seconds,
        }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def machine_info() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        # Other work on the machine skews every figure: look here before comparing runs.
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def human(value: float) -> str:
    """3 significant figures with a k/M suffix: 412345 -> '412k'."""
    for threshold, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            scaled = value / threshold
            return f"{scaled:.3g}{suffix}"
    return f"{value:.3g}"


def _figure_cell(figure: Figure) -> str:
    if len(figure.samples) > 1:
        return f"{human(figure.best)} / {human(figure.median)}"
    return human(figure.median)


def format_table(results: list[BenchResult]) -> str:
    header = (
        "benchmark",
        "case",
        "candidate best/median",
        "baseline best/median",
        "ratio",
        "aim",
    )
    lines: list[tuple[str, ...]] = [header]
    for result in results:
        for row in result.rows:
            unit = row.candidate.unit
            if row.aim is None:
                aim = "-"
            else:
                sign = ">=" if row.candidate.higher_is_better else "<="
                aim = f"{sign} {human(row.aim)} {'ok' if row.meets_aim else 'MISSED'}"
            lines.append(
                (
                    result.name,
                    row.case,
                    f"{_figure_cell(row.candidate)} {unit}",
                    f"{_figure_cell(row.baseline)} {unit}",
                    f"{row.ratio:.2f}x",
                    aim,
                )
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_extra_table(table: dict[str, Any]) -> str:
    """A benchmark's own table (``extra["tables"]``): a title, column names, rows of cells."""
    lines: list[list[str]] = [list(table["columns"])] + [
        [str(cell) for cell in row] for row in table["rows"]
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = [table["title"]]
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def write_json(result: BenchResult, machine: dict[str, Any], results_dir: Path) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{result.name}.json"
    payload = {
        "written_at": datetime.now(UTC).isoformat(),
        "machine": machine,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        **result.to_json(),
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
